#!/usr/bin/env bash
# utils/parse_options.sh: Kaldi-style options for recipe scripts, with a --help generated from the script itself.
#
# A script declares its options once, one per line, between two marker lines, then sources this file:
#
#     # BEGIN OPTIONS
#     # General                     <- a comment line starts a section of the help
#     nj=4                          # Number of parallel jobs.
#     audio_format=flac             # flac or wav.
#     # END OPTIONS
#     help_message="Usage: $0 [options] <data-dir>"    # optional: printed above the option list
#     . utils/parse_options.sh
#
# Leading arguments `--name value` or `--name=value` then set the variable `name` (dashes in a name count as
# underscores, as in Kaldi); parsing stops at the first argument that is not an option, or after `--`, and the
# remaining (positional) arguments are left in "$@". Options whose default is true or false only accept true or
# false. `--help` (or `-h`) prints $help_message and one line per option with its doc and its default, read from
# the block, so the help cannot drift from the defaults.
#
# Without the markers it behaves like Kaldi's parse_options.sh: any variable set before this file is sourced is
# an option, and the help lists the unindented `name=value` lines above the line that sources this file.
#
# Everything here is prefixed `_po_` and removed at the end: sourcing must not leave names in the script.

_po_script=${BASH_SOURCE[1]:-$0}
_po_sourced_at=${BASH_LINENO[0]:-0}
_po_marked=false
if grep -q '^# BEGIN OPTIONS' "${_po_script}" 2>/dev/null; then
    _po_marked=true
fi

# Prints the option block as tab-separated rows: "option<TAB>name<TAB>doc" or "section<TAB>title".
_po_option_rows() {
    awk -v marked="${_po_marked}" -v last_line="$((_po_sourced_at - 1))" '
        marked == "true" && /^# BEGIN OPTIONS/ { inside = 1; next }
        marked == "true" && /^# END OPTIONS/ { inside = 0; next }
        marked == "false" { inside = (NR <= last_line) }
        !inside { next }
        /^[A-Za-z_][A-Za-z0-9_]*=/ {
            name = substr($0, 1, index($0, "=") - 1)
            if (name == "help_message") next
            doc = ""
            if (match($0, /[ \t]+#[ \t]*/)) doc = substr($0, RSTART + RLENGTH)
            printf "option\t%s\t%s\n", name, doc
            next
        }
        marked == "true" && /^#/ { title = $0; sub(/^#+[ \t]*/, "", title); printf "section\t%s\n", title }
    ' "${_po_script}"
}

# The defaults: the values the options have before any argument is applied.
declare -A _po_default=()
while IFS=$'\t' read -r _po_kind _po_name _po_doc; do
    if [[ ${_po_kind} == option ]]; then
        _po_default[${_po_name}]=${!_po_name-}
    fi
done < <(_po_option_rows)

# Locals are prefixed too: `local name` would hide a script option called `name` from ${!...} and printf -v.
_po_print_help() {
    local _po_kind _po_name _po_doc _po_row _po_width=0
    if [[ -n ${help_message:-} ]]; then
        printf '%b\n\n' "${help_message}"
    else
        printf 'Usage: %s [options]\n\n' "$0"
    fi
    for _po_name in "${!_po_default[@]}"; do
        (( ${#_po_name} > _po_width )) && _po_width=${#_po_name}
    done
    printf 'Options (--name value or --name=value):\n'
    while IFS=$'\t' read -r _po_kind _po_name _po_doc; do
        if [[ ${_po_kind} == section ]]; then
            printf '  # %s\n' "${_po_name}"
            continue
        fi
        _po_row=$(printf '  --%-*s  %s (default="%s")' "${_po_width}" "${_po_name}" "${_po_doc}" \
            "${_po_default[${_po_name}]-}")
        # Options given before --help (a recipe's run.sh passes its own values first) are shown too.
        if [[ ${!_po_name-} != "${_po_default[${_po_name}]-}" ]]; then
            _po_row+=" (given: \"${!_po_name-}\")"
        fi
        printf '%s\n' "${_po_row}"
    done < <(_po_option_rows)
}

_po_fail() {
    printf '%s: %s\n' "$0" "$*" >&2
    exit 1
}

_po_is_option() {
    if ${_po_marked}; then
        [[ -v _po_default[$1] ]]
    else
        [[ $1 != _po_* && -v $1 ]]
    fi
}

# _po_set NAME VALUE AS_GIVEN
_po_set() {
    if [[ ! $1 =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || ! _po_is_option "$1"; then
        _po_fail "unknown option $3; run '$0 --help' to list the options"
    fi
    if [[ ${_po_default[$1]-${!1}} =~ ^(true|false)$ && ! $2 =~ ^(true|false)$ ]]; then
        _po_fail "option --$1 takes true or false, got '$2'"
    fi
    printf -v "$1" '%s' "$2"
}

while (( $# > 0 )); do
    case $1 in
        --)
            shift
            break
            ;;
        -h | --help)
            _po_print_help
            exit 0
            ;;
        --?*=*)
            _po_option=${1%%=*}
            _po_name=${_po_option#--}
            _po_set "${_po_name//-/_}" "${1#*=}" "${_po_option}"
            shift
            ;;
        --?*)
            (( $# >= 2 )) || _po_fail "option $1 needs a value (write $1 VALUE or $1=VALUE)"
            _po_name=${1#--}
            _po_set "${_po_name//-/_}" "$2" "$1"
            shift 2
            ;;
        *)
            break
            ;;
    esac
done

unset -f _po_option_rows _po_print_help _po_fail _po_is_option _po_set
unset _po_script _po_sourced_at _po_marked _po_default _po_kind _po_name _po_doc _po_option
true
