#!/usr/bin/env python3
"""Extract the OpenAPI YAML from a docs.phala.com page export and write it as openapi.json.

Usage: python3 scripts/spec-from-docs.py PAGE.txt > openapi.json
The YAML is converted unedited: same keys, same order, same values.
"""
import json
import re
import sys

import yaml

text = open(sys.argv[1], encoding="utf-8").read()
match = re.search(r"^````yaml[^\n]*\n(.*?)^````", text, re.S | re.M)
source = match.group(1) if match else text
json.dump(yaml.safe_load(source), sys.stdout, indent=2, ensure_ascii=False)
sys.stdout.write("\n")
