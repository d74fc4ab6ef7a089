#!/usr/bin/env python3
"""Merges the OpenAPI fragments in docs/openapi/*.json into one document.

The first fragment (00-service.json) holds the document's header (openapi,
info, servers) and shared components; every fragment may add paths, tags and
components. A path or component defined twice is an error, so two areas can
never silently overwrite each other.
"""
import argparse
import json
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--output", required=True)
ap.add_argument("inputs", nargs="+")
args = ap.parse_args()

inputs = sorted(args.inputs)
doc = None
for path in inputs:
    with open(path, encoding="utf-8") as f:
        frag = json.load(f)
    if doc is None:
        doc = frag
        doc.setdefault("paths", {})
        doc.setdefault("components", {})
        doc.setdefault("tags", [])
        continue
    for p, item in frag.get("paths", {}).items():
        target = doc["paths"].setdefault(p, {})
        for method, op in item.items():
            if method in target:
                sys.exit("openapi: %s %s is defined twice (%s)" % (method, p, path))
            target[method] = op
    for kind, entries in frag.get("components", {}).items():
        target = doc["components"].setdefault(kind, {})
        for name, value in entries.items():
            if name in target and target[name] != value:
                sys.exit("openapi: component %s/%s differs in %s" % (kind, name, path))
            target[name] = value
    names = {t["name"] for t in doc["tags"]}
    for t in frag.get("tags", []):
        if t["name"] not in names:
            doc["tags"].append(t)
with open(args.output, "w", encoding="utf-8") as f:
    json.dump(doc, f, indent=1, sort_keys=False)
    f.write("\n")
