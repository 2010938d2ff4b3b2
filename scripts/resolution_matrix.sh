#!/usr/bin/env bash
# Does the built wheel resolve, without our lock, beside each supported Airflow on each supported Python?
# Prints one line per pair with the providers and botocore the resolver picks; exits 1 if any pair fails.
set -uo pipefail
uv=${UV:-.venv/bin/uv}
wheel=$(ls "$PWD"/dist/polysync_airflow-*.whl)
status=0
for airflow in 3.1.8 3.2.2 3.3.2; do
    for python in 3.11 3.12 3.13; do
        out=$(mktemp)
        if printf 'apache-airflow==%s\npolysync-airflow @ file://%s\n' "$airflow" "$wheel" |
            "$uv" pip compile --quiet - --python-version "$python" -o "$out" 2>"$out.err"; then
            picked=$(grep -E '^(apache-airflow-providers-(amazon|microsoft-azure)|botocore)==' "$out" | tr '\n' ' ')
            echo "airflow $airflow  python $python  resolves  $picked"
        else
            echo "airflow $airflow  python $python  FAILS: $(tail -3 "$out.err" | tr '\n' ' ')"
            status=1
        fi
        rm -f "$out" "$out.err"
    done
done
exit $status
