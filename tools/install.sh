#!/usr/bin/env bash
# Installs speechllm into a virtualenv at tools/venv with the pinned stack of tools/constraints.txt.
#   tools/install.sh [--extras "demo,test"] [--sctk] [--slurm] [--real_speech] [--tts] [--python python3]
# --sctk / --slurm also install NIST sclite (Debian sctk) / Slurm (slurm-wlm) with apt (root only; without root, a
#   note, and the tests that need them skip).
# --real_speech installs (apt, root only) the Debian packages holding the real English recordings of
# egs2/synth_english/speechllm1/local/real_speech.py: alsa-utils, klettres-data, ktuberling-data (90 MB to fetch).
# --tts installs (apt, root only) the synthesisers and texts of egs2/synth_english/speechllm1/local/synthesize.py:
#   flite, festival with festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts, sword-text-web, wordnet-base.
# Idempotent: a rerun only installs what changed. Remove tools/venv to start over.
set -euo pipefail

extras="demo"
with_sctk=false
with_slurm=false
with_real_speech=false
with_tts=false
python=python3
while [ $# -gt 0 ]; do
    case "$1" in
        --extras) extras="$2"; shift 2 ;;
        --sctk) with_sctk=true; shift ;;
        --slurm) with_slurm=true; shift ;;
        --tts) with_tts=true; shift ;;
        --real_speech) with_real_speech=true; shift ;;
        --python) python="$2"; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
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

# sclite and Slurm serve some tests only: without root (or apt) they are not installed and those tests skip, saying
# why, so that README's test command also works for a user without root.
optional_apt_install() {
    apt_install "$@" || echo "$0: note: $* not installed; the tests that need it will be skipped (they say so)" >&2
}
# MediaPipe's OpenCV (the av extra, in test) loads the system's libGL.so.1; Debian's libgl1 has it.
if [[ ,${extras}, == *,av,* || ,${extras}, == *,test,* ]] && ! ldconfig -p 2> /dev/null | grep -q 'libGL\.so\.1'; then
    optional_apt_install libgl1
fi
${with_sctk} && optional_apt_install sctk
${with_slurm} && optional_apt_install slurm-wlm munge
${with_real_speech} && apt_install --no-install-recommends alsa-utils klettres-data ktuberling-data
${with_tts} && apt_install flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts \
    sword-text-web wordnet-base

echo "speechllm installed in ${venv} in $(( $(date +%s) - start )) s ($(du -sh "${venv}" | cut -f1))."
echo "Activate with: . ${venv}/bin/activate   (recipes' path.sh does it for you)"
