#!/usr/bin/env bash
# setup.sh: creates a new recipe from this template, as ESPnet's egs2/TEMPLATE/asr1/setup.sh does.
#   egs2/TEMPLATE/speechllm1/setup.sh egs2/<corpus>/speechllm1
# Copies what each corpus edits (run.sh, conf/, local/, db.sh: where its corpus lives) and links what all recipes
# of an installation share (speechllm.sh, path.sh, cmd.sh: the job backends, utils/), so that a fix or a site
# setting made once in the template reaches every recipe, and editing the new recipe's files never edits the
# template.
set -euo pipefail

if [[ $# -ne 1 || $1 == -* ]]; then
    echo "Usage: $0 <new-recipe-dir>   e.g. $0 egs2/mycorpus/speechllm1" >&2
    exit 1
fi
target=$1
template=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
main_root=$(cd "${template}/../../.." && pwd)

if [[ -e ${target} && ! -d ${target} ]]; then
    echo "$0: ${target} exists and is not a directory; choose another path" >&2
    exit 1
fi
if [[ -d ${target} && -n $(ls -A "${target}") ]]; then
    echo "$0: ${target} already exists and is not empty; refusing to overwrite a recipe" \
        "(remove it first, or choose another path)" >&2
    exit 1
fi

for file in run.sh conf local speechllm.sh av.sh path.sh cmd.sh db.sh; do
    if [[ ! -e ${template}/${file} ]]; then
        echo "$0: the template lacks ${template}/${file}; restore it (git checkout) and run again" >&2
        exit 1
    fi
done

mkdir -p "${target}"
for file in run.sh conf local db.sh; do
    cp -R "${template}/${file}" "${target}/"
done
for file in speechllm.sh av.sh path.sh cmd.sh; do
    ln -s "$(realpath --relative-to="${target}" "${template}/${file}")" "${target}/${file}"
done
ln -s "$(realpath --relative-to="${target}" "${main_root}/utils")" "${target}/utils"

echo "Created ${target}: copied run.sh conf/ local/ db.sh; linked speechllm.sh av.sh path.sh cmd.sh utils."
echo "Next: write ${target}/local/data.sh for your corpus (its placeholder says what it must produce),"
echo "set its location in ${target}/db.sh, adapt the example configs in ${target}/conf/ (train.yaml,"
echo "decode.yaml), set the data sets and configs in ${target}/run.sh, then"
echo "cd ${target} && ./run.sh"
