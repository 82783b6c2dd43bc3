# Shared by the scripts in this folder (sourced, from the repository root).

# Installs Debian's package $2 (default: the command's name) when the
# command $1 is missing.
need_command() {
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "(installing ${2:-$1})"
        apt-get update -qq && apt-get install -y -qq "${2:-$1}" >/dev/null
    fi
}

# Sets BIN: $TRAIL_BIN when given (another build, no cargo build), else the
# release binary, built now.
trail_bin() {
    if [ -n "${TRAIL_BIN:-}" ]; then
        BIN=$TRAIL_BIN
    else
        cargo build --release --quiet
        BIN=$PWD/target/release/trail
    fi
}
