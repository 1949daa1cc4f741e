#!/usr/bin/env bash
# Generate a seeded synthetic population with Synthea 3.3.0 (fetched from Maven Central) plus
# fhirscreen's SLE module (bench/synthea/modules), as FHIR R4 transaction bundles and Bulk NDJSON.
# The Flexporter mapping bench/synthea/flexporter.yaml adds reference ranges and H/L flags to the SLE labs.
#
#   bench/synthea.sh [-p PEOPLE] [-s SEED] [-o OUTDIR] [-m MODULES] [-k] [-e YYYYMMDD]
#     -p  living people to generate (default 200)
#     -s  population and clinician seed (default 42)
#     -o  output folder (default bench/work/synthea-SEED-PEOPLE); it is replaced
#     -m  Synthea module filter, e.g. "sle_trial" for SLE-only runs (default: all modules + sle_trial)
#     -k  keep only people with lupus (keep module); for SLE-rich benchmark populations
#     -e  end/reference date (default 20260601, the date screening runs as of)
#
# The same seed, size, modules and date give the same records (line order may differ between runs).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
people=200 seed=42 out="" modules="" keep=0 end=20260601
while getopts "p:s:o:m:ke:" opt; do
  case "$opt" in
    p) people="$OPTARG" ;; s) seed="$OPTARG" ;; o) out="$OPTARG" ;; m) modules="$OPTARG" ;;
    k) keep=1 ;; e) end="$OPTARG" ;; *) sed -n '2,14p' "$0"; exit 2 ;;
  esac
done
out="${out:-$here/work/synthea-$seed-$people}"
lib="$here/synthea/target/lib"

if [ ! -f "$lib/synthea-3.3.0.jar" ]; then
  echo "synthea.sh: fetching Synthea 3.3.0 and its dependencies with Maven (first time only)..." >&2
  t0=$(date +%s)
  mvn -B -q -f "$here/synthea/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory=target/lib
  echo "synthea.sh: fetched in $(( $(date +%s) - t0 )) s ($(du -sh "$lib" | cut -f1))" >&2
fi

rm -rf "$out" && mkdir -p "$out"
args=(-s "$seed" -cs "$seed" -r "$end" -e "$end" -p "$people" -d "$here/synthea/modules")
# Reference ranges and H/L flags on the SLE labs (GMF cannot write them): bench/synthea/flexporter.yaml.
args+=(-fm "$here/synthea/flexporter.yaml")
[ -n "$modules" ] && args+=(-m "$modules")
[ "$keep" = 1 ] && args+=(-k "$here/synthea/keep_sle.json")
common=(
  --exporter.baseDirectory="$out/raw"
  --exporter.fhir.export=true --exporter.pretty_print=false
  --exporter.csv.export=false --exporter.ccda.export=false --exporter.text.export=false
  --exporter.hospital.fhir.export=false --exporter.practitioner.fhir.export=false
  --exporter.years_of_history=10 --exporter.use_uuid_filenames=true
  --exporter.fhir.excluded_resources=Claim,ExplanationOfBenefit,Provenance,DocumentReference,ImagingStudy,Media,SupplyDelivery
  --generate.log_patients.detail=none
)
t0=$(date +%s)
java -Xmx${SYNTHEA_XMX:-4g} -cp "$lib/*" App "${args[@]}" "${common[@]}" Massachusetts > "$out/synthea.log" 2>&1 \
  || { tail -n 30 "$out/synthea.log" >&2; exit 1; }
mv "$out/raw/fhir" "$out/bundles" && rm -rf "$out/raw"
# The same records as Bulk Data NDJSON, one file per resource type, lines sorted for stable output.
python3 "$here/bundles_to_ndjson.py" "$out/bundles" "$out/ndjson"
echo "synthea.sh: $people people (seed $seed) in $(( $(date +%s) - t0 )) s -> $out" >&2
grep -E "^(Records|Running|Seed|Population)" "$out/synthea.log" >&2 || true
