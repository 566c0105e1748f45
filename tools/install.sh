#!/usr/bin/env bash
# Installs speechllm into a virtualenv at tools/venv with the pinned stack of tools/constraints.txt.
#   tools/install.sh [--extras "demo,test"] [--sctk] [--slurm] [--python python3]
# --sctk / --slurm also install NIST sclite (Debian sctk) / Slurm (slurm-wlm) with apt (root only).
# Idempotent: a rerun only installs what changed. Remove tools/venv to start over.
set -euo pipefail

extras="demo"
with_sctk=false
with_slurm=false
python=python3
while [ $# -gt 0 ]; do
    case "$1" in
        --extras) extras="$2"; shift 2 ;;
        --sctk) with_sctk=true; shift ;;
        --slurm) with_slurm=true; shift ;;
        --python) python="$2"; shift 2 ;;
        -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
        *) echo "$0: unknown option '$1' (see --help)" >&2; exit 1 ;;
    esac
done

tools_dir=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "${tools_dir}")
venv="${tools_dir}/venv"

apt_install() {
    if [ "$(id -u)" != 0 ] || ! command -v apt-get > /dev/null; then
        echo "$0: installing $* needs root and apt-get; install it yourself or drop the option" >&2
        return 1
    fi
    if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit 2> /dev/null)" ]; then
        apt-get update -qq
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" > /dev/null
}

start=$(date +%s)
if [ ! -x "${venv}/bin/python" ]; then
    "${python}" -m venv "${venv}"
fi
# The lock pins torch 2.8 with torchaudio 2.8: the newest pair with which s3prl 0.4.18 imports unchanged.
"${venv}/bin/python" -m pip install -q -c "${tools_dir}/constraints.txt" -e "${root}[${extras}]"
"${venv}/bin/python" -m pip check

${with_sctk} && apt_install sctk
${with_slurm} && apt_install slurm-wlm munge

echo "speechllm installed in ${venv} in $(( $(date +%s) - start )) s ($(du -sh "${venv}" | cut -f1))."
echo "Activate with: . ${venv}/bin/activate   (recipes' path.sh does it for you)"
