#!/usr/bin/env bash
# Score trn files with sclite's arguments: NIST sclite when installed, else speechllm's builtin re-implementation
# (identical reports). Example: utils/score_sclite.sh -r ref.trn trn -h hyp.trn trn -i rm -o all stdout > result.txt
# SPEECHLLM_SCORER=auto|sclite|builtin (default auto) picks the scorer; SCLITE=/path/to/sclite picks the binary.
# Implemented in speechllm/bin/sclite.py (python -m speechllm.bin.sclite).
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
scorer=${SPEECHLLM_SCORER:-auto}
sclite_bin=${SCLITE:-$(command -v sclite || echo /usr/lib/sctk/bin/sclite)}
case "${scorer}" in
    auto|sclite)
        if [ -x "${sclite_bin}" ]; then
            exec "${sclite_bin}" "$@"
        fi
        if [ "${scorer}" = sclite ]; then
            echo "$0: NIST sclite not found at ${sclite_bin}; run 'apt-get install -y sctk' or use SPEECHLLM_SCORER=builtin" >&2
            exit 1
        fi
        ;;
    builtin) ;;
    *)
        echo "$0: SPEECHLLM_SCORER must be auto, sclite or builtin, not '${scorer}'" >&2
        exit 1
        ;;
esac
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m speechllm.bin.sclite "$@"
