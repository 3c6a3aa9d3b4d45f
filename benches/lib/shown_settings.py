"""Prints settings given as NAME=value words for the results, with the values of secret-looking
names (keys, secrets, passwords, tokens, URLs) hidden: results and docs are committed.

Usage: shown_settings.py [--json] NAME=value...   (--json: as one JSON string)"""
import json
import re
import sys

SECRET = re.compile(r"KEY|SECRET|PASSWORD|TOKEN|URL")


def shown(word):
    name = word.split("=", 1)[0]
    return f"{name}=(hidden)" if SECRET.search(name) else word


args = sys.argv[1:]
as_json = bool(args) and args[0] == "--json"
text = " ".join(shown(a) for a in args[as_json:])
print(json.dumps(text) if as_json else text)
