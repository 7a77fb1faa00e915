#!/usr/bin/env bash
# Add the PNS pathway to a copy of a ruleset: ./add.sh RULESET_COPY. Files only; no Python is touched.
set -euo pipefail
here=$(dirname "$0")
to=$1
cp "$here"/catalogues/*.yaml "$to/catalogues/"
cp "$here/rules/pns.yaml" "$to/rules/"
cp "$here/tests/pns.yaml" "$to/tests/"
# the new procedure kinds, after the first code of the procedure_kind vocabulary
sed -i "/^      - {code: facet_mbb, /r /dev/stdin" "$to/catalogues/vocabularies.yaml" < <(grep -v '^#' "$here/procedure-kinds.yaml")
grep -v '^#' "$here/criteria.yaml" >> "$to/catalogues/criteria.yaml"
# new clinical values need a new ruleset version (the lock refuses them at the old one)
# (the next minor version, e.g. 0.2.0 -> 0.3.0)
awk '/^version: [0-9]+\.[0-9]+\.[0-9]+$/ {split($2, v, "."); print "version: " v[1] "." v[2] + 1 ".0"; next} {print}' \
  "$to/ruleset.yaml" > "$to/ruleset.yaml.new" && mv "$to/ruleset.yaml.new" "$to/ruleset.yaml"
