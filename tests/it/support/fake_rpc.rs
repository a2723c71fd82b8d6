//! A fake JSON-RPC endpoint on loopback, answering each call by a test's closure: for replies a
//! real node does not give (hangs, huge bodies, refused log ranges, pending receipts).

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// How to answer one call.
pub enum Answer {
    /// `{"result": …}`
    Result(Value),
    /// `{"error": {"code": …, "message": …}}`
    Error(i64, String),
    /// Read the request, never answer.
    Hang,
    /// This many bytes of a JSON string as the result (a reply far too long).
    Huge(usize),
}

/// A call as received: the method and its params.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub params: Value,
}

pub struct FakeRpc {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub calls: Arc<Mutex<Vec<Call>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeRpc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeRpc {
    pub async fn start<F>(answer: F) -> Self
    where
        F: Fn(&Call) -> Answer + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(Mutex::new(Vec::new()));
        let log = calls.clone();
        let answer = Arc::new(answer);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let (log, answer) = (log.clone(), answer.clone());
                tokio::spawn(async move {
                    while let Some(request) = super::read_request(&mut sock).await {
                        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else { return };
                        let call = Call {
                            method: body["method"].as_str().unwrap_or_default().to_owned(),
                            params: body["params"].clone(),
                        };
                        log.lock().unwrap().push(call.clone());
                        let id = body["id"].clone();
                        let reply = match answer(&call) {
                            Answer::Result(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string(),
                            Answer::Error(code, message) => {
                                json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
                                    .to_string()
                            }
                            Answer::Hang => {
                                std::future::pending::<()>().await;
                                unreachable!()
                            }
                            Answer::Huge(n) => {
                                format!(r#"{{"jsonrpc":"2.0","id":{id},"result":"{}"}}"#, "a".repeat(n))
                            }
                        };
                        let reply = super::response(200, &[("content-type", "application/json")], reply.as_bytes());
                        if sock.write_all(&reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { url, calls, task }
    }

    /// The calls received so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The raw transactions sent with `eth_sendRawTransaction`.
    pub fn raw_transactions(&self) -> Vec<Vec<u8>> {
        self.calls()
            .iter()
            .filter(|c| c.method == "eth_sendRawTransaction")
            .map(|c| const_hex::decode(c.params[0].as_str().unwrap()).unwrap())
            .collect()
    }
}

/// Hex of a number, as JSON-RPC quantities are written.
pub fn quantity(n: u128) -> Value {
    json!(format!("{n:#x}"))
}

/// The answers of a healthy chain (id 31337, block 100, nothing pending) where `owner` owns the
/// app contract and `allowed` says whether the hash is allowed; `None` for the calls a test
/// answers itself.
pub fn healthy(call: &Call, owner: alloy::primitives::Address, allowed: bool) -> Option<Answer> {
    let word = |bytes: &[u8]| {
        let mut w = [0u8; 32];
        w[32 - bytes.len()..].copy_from_slice(bytes);
        json!(const_hex::encode_prefixed(w))
    };
    Some(Answer::Result(match call.method.as_str() {
        "eth_chainId" => quantity(31_337),
        "eth_blockNumber" => quantity(100),
        "eth_getTransactionCount" => quantity(3),
        "eth_getBalance" => quantity(10u128.pow(18)),
        "eth_estimateGas" => quantity(47_000),
        "eth_maxPriorityFeePerGas" => quantity(1_000_000),
        "eth_feeHistory" => {
            json!({"oldestBlock": "0x64", "baseFeePerGas": ["0x3b9aca00", "0x3b9aca00"], "gasUsedRatio": [0.5]})
        }
        "eth_call" => {
            let data = call.params[0]["input"].as_str().or(call.params[0]["data"].as_str()).unwrap_or_default();
            if data.starts_with("0x8da5cb5b") {
                word(owner.as_slice())
            } else if data.starts_with("0x2f6622e5") {
                word(&[u8::from(allowed)])
            } else {
                return Some(Answer::Error(-32000, "execution reverted".into()));
            }
        }
        "eth_sendRawTransaction" => {
            let raw = const_hex::decode(call.params[0].as_str().unwrap()).unwrap();
            json!(alloy::primitives::keccak256(raw))
        }
        _ => return None,
    }))
}

/// `answer`'s answers first, then those of a [`healthy`] chain (`owner`, `allowed`), and
/// "method not found" for any other call.
pub fn healthy_after(
    owner: alloy::primitives::Address,
    allowed: bool,
    answer: impl Fn(&Call) -> Option<Answer> + Send + Sync + 'static,
) -> impl Fn(&Call) -> Answer + Send + Sync + 'static {
    move |call| {
        answer(call)
            .or_else(|| healthy(call, owner, allowed))
            .unwrap_or(Answer::Error(-32601, "method not found".into()))
    }
}

/// For `eth_getTransactionReceipt` (`None` for any other call): a successful receipt of the
/// transaction asked for, from `from` to `app`, with its `ComposeHashAdded(hash)` log of block
/// 101, mined in `block` (`None`: pending).
pub fn registration_receipt(
    call: &Call,
    from: alloy::primitives::Address,
    app: alloy::primitives::Address,
    hash: alloy::primitives::B256,
    block: Option<u64>,
) -> Option<Answer> {
    if call.method != "eth_getTransactionReceipt" {
        return None;
    }
    let tx: alloy::primitives::B256 = call.params[0].as_str().unwrap().parse().unwrap();
    let log = log_json(app, phala_cloud::onchain::COMPOSE_HASH_ADDED_TOPIC, hash, 101, tx, false);
    Some(Answer::Result(receipt_json(tx, from, app, block, vec![log])))
}

/// A `ComposeHashAdded(hash)` log as a node writes it.
pub fn log_json(
    address: alloy::primitives::Address,
    topic: alloy::primitives::B256,
    hash: alloy::primitives::B256,
    block: u64,
    tx: alloy::primitives::B256,
    removed: bool,
) -> Value {
    json!({
        "address": address, "topics": [topic], "data": hash,
        "blockHash": alloy::primitives::B256::repeat_byte(0xbb), "blockNumber": format!("{block:#x}"),
        "transactionHash": tx, "transactionIndex": "0x0", "logIndex": "0x0", "removed": removed,
    })
}

/// A successful receipt of `tx` to `to` carrying `logs`; `block` `None` as a pending receipt.
pub fn receipt_json(
    tx: alloy::primitives::B256,
    from: alloy::primitives::Address,
    to: alloy::primitives::Address,
    block: Option<u64>,
    logs: Vec<Value>,
) -> Value {
    json!({
        "type": "0x2", "status": "0x1", "cumulativeGasUsed": "0xb798", "logs": logs,
        "logsBloom": format!("0x{}", "00".repeat(256)),
        "transactionHash": tx, "transactionIndex": "0x0",
        "blockHash": block.map(|_| alloy::primitives::B256::repeat_byte(0xbb)),
        "blockNumber": block.map(|b| format!("{b:#x}")),
        "gasUsed": "0xb798", "effectiveGasPrice": "0x3b9aca00",
        "from": from, "to": to, "contractAddress": null,
    })
}
