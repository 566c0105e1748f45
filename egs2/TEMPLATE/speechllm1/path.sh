#!/usr/bin/env bash
# path.sh: the environment of every recipe script (sourced by speechllm.sh and local/*.sh; source it yourself to
# run the tools by hand). Recipes link it from egs2/TEMPLATE/speechllm1/, so the repository root is found from
# the link's target. HF_HUB_OFFLINE and the like are left to the user.

MAIN_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../.." && pwd)
if [[ ! -d ${MAIN_ROOT}/speechllm ]]; then
    echo "path.sh: no speechllm package under ${MAIN_ROOT}: link path.sh from egs2/TEMPLATE/speechllm1/" \
        "(egs2/TEMPLATE/speechllm1/setup.sh does it)" >&2
    return 1
fi
export MAIN_ROOT

# The Python environment tools/ installs; without it, whatever python3 is on PATH is used.
if [[ -f ${MAIN_ROOT}/tools/venv/bin/activate ]]; then
    # shellcheck source=/dev/null
    . "${MAIN_ROOT}/tools/venv/bin/activate"
fi

export PYTHONPATH=${MAIN_ROOT}${PYTHONPATH:+:${PYTHONPATH}}
export PATH=${MAIN_ROOT}/utils:${PATH}
# NIST SCTK (apt-get install sctk) puts sclite there, off the default PATH.
if [[ -d /usr/lib/sctk/bin ]]; then
    export PATH=${PATH}:/usr/lib/sctk/bin
fi

# Byte-order sorting for Kaldi files; UTF-8 text in Python whatever the locale; one thread per job by default,
# since the recipes run several jobs at once.
export LC_ALL=C
export PYTHONIOENCODING=UTF-8
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
