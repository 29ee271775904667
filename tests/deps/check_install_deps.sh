#!/usr/bin/env bash
# Guard: everything the build and the tests use comes from scripts/install-deps.sh.
#
#   tests/deps/check_install_deps.sh [--without PKG]... BUILD_DIR...
#
# A package installed by hand once stays on a developer's (and CI's) machine, so a green CI can
# hide a missing install step; a fresh machine then fails. This guard collects what the build
# really used and names every Debian package that a fresh machine would not get:
#   - files: the absolute paths in each build dir's CMakeCache.txt, build.ninja and
#     CMakeFiles/rules.ninja (CMake modules read, compilers, tools, static and shared libraries
#     on link lines), the headers from `ninja -t deps`, and the shared libraries each ELF
#     binary of the build loads (ldd);
#   - run-time tools the tests and scripts call (prometheus, promtool, node, ...);
# each file is mapped to the package that owns it (dpkg -S), which must be in the
# Depends/Pre-Depends closure of `install-deps.sh --print-packages`, or of Priority required or
# important. A file no package owns fails too, except under /usr/local/cuda* (CUDA and NCCL
# are optional; the build detects them) and the project's own trees.
# The npm side is checked by check_npm_deps.mjs (pinned versions, lockfile, the cache the only
# source of modules).
#
# --without PKG drops PKG from the install list as if someone had deleted it: the guard must
# then fail naming it (tests/deps/guard_self_test.sh proves that it does).
#
# The closure is computed from dpkg's own database (what is installed, with the Depends it was
# installed with), so the guard needs no apt lists and no network; a listed package that is not
# installed has an empty closure, and what it would have brought is then reported.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cache="${DSV3_CACHE_DIR:-$HOME/.cache/dsv3}"

without=()
build_dirs=()
while (($#)); do
  case "$1" in
    --without) without+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) build_dirs+=("$(cd "$1" && pwd)"); shift ;;
  esac
done
((${#build_dirs[@]})) || { echo "usage: $0 [--without PKG]... BUILD_DIR..." >&2; exit 2; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# --- the packages a fresh machine gets ----------------------------------------------------
"$root/scripts/install-deps.sh" --print-packages >"$work/listed"
for p in "${without[@]}"; do
  grep -qx "$p" "$work/listed" || { echo "check-install-deps: --without $p: not in the list" >&2; exit 2; }
  grep -vx "$p" "$work/listed" >"$work/listed.tmp"; mv "$work/listed.tmp" "$work/listed"
done
# Every installed package with its Priority, Provides, Depends and Pre-Depends, one a line:
#   name<TAB>priority<TAB>provides<TAB>depends, pre-depends
dpkg-query -W -f='${db:Status-Abbrev}\t${Package}\t${Priority}\t${Provides}\t${Depends}, ${Pre-Depends}\n' |
  awk -F'\t' '$1 ~ /^ii/ { print $2 "\t" $3 "\t" $4 "\t" $5 }' >"$work/installed"
# Breadth-first closure over Depends/Pre-Depends; an alternative (a | b) counts when installed;
# a virtual name stands for every installed package that provides it.
awk -F'\t' '
  function strip(x) { gsub(/\([^)]*\)|\[[^]]*\]|<[^>]*>/, "", x); sub(/:[a-z0-9]+$/, "", x); gsub(/ /, "", x); return x }
  FILENAME == ARGV[1] { queue[++n] = $1; seen[$1] = 1; next }
  {
    installed[$1] = 1; deps[$1] = $4
    if ($2 == "required" || $2 == "important") { queue[++n] = $1; seen[$1] = 1 }
    m = split($3, prov, ",")
    for (i = 1; i <= m; i++) { v = strip(prov[i]); if (v != "") providers[v] = providers[v] " " $1 }
  }
  END {
    for (q = 1; q <= n; q++) {
      p = queue[q]
      m = split(deps[p], d, ",")
      for (i = 1; i <= m; i++) {
        k = split(d[i], alt, "|")
        for (j = 1; j <= k; j++) {
          a = strip(alt[j]); if (a == "") continue
          names = (a in installed) ? a : ""
          if (a in providers) names = names providers[a]
          c = split(names, each, " ")
          for (e = 1; e <= c; e++) if (each[e] != "" && !(each[e] in seen)) { seen[each[e]] = 1; queue[++n] = each[e] }
        }
      }
    }
    for (p in seen) print p
  }' "$work/listed" "$work/installed" | sort -u >"$work/allowed"

# --- the files the build used -------------------------------------------------------------
abs_paths() {  # absolute paths in the given text files, one a line
  grep -ohE '(^|[[:space:];"=:,])(-[IL]|-isystem ?)?/(usr|lib|lib64|opt|bin|sbin|etc)/[^[:space:];"'"'"',)]+' "$@" 2>/dev/null |
    sed -E 's/^[[:space:];"=:,]//; s/^-isystem ?//; s/^-[IL]//'
}
: >"$work/files"
for dir in "${build_dirs[@]}"; do
  [ -f "$dir/CMakeCache.txt" ] || { echo "check-install-deps: $dir is not a configured build dir" >&2; exit 2; }
  abs_paths "$dir/CMakeCache.txt" "$dir/build.ninja" "$dir/CMakeFiles/rules.ninja" >>"$work/files"
  # Headers every object was compiled with (ninja records them from the compiler's -MD output).
  ninja -C "$dir" -t deps 2>/dev/null | awk '/^    \// { print $1 }' >>"$work/files"
  # Shared libraries every ELF binary of the build loads.
  find "$dir" -type f \( -perm -u+x -o -name '*.so*' \) -not -path '*/CMakeFiles/*' |
    while IFS= read -r f; do [ "$(head -c4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] && echo "$f"; done >"$work/elves"
  xargs -r -d '\n' ldd <"$work/elves" 2>/dev/null |
    awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $1 !~ /:$/ { print $1 }' >>"$work/files"
done
# Run-time tools the tests, benches and scripts call by name.
for tool in prometheus promtool node ucx_perftest ucx_info clang clang++ clang-format cmake ninja ccache \
            pkg-config git protoc grpc_cpp_plugin c++ cc ldd; do
  p="$(command -v "$tool" || true)"
  [ -n "$p" ] || { echo "check-install-deps: FAIL: the tests call '$tool', which is not installed" >&2; exit 1; }
  echo "$p" >>"$work/files"
done
# Regular files and symlinks only (a directory such as /usr/include belongs to many packages).
sort -u "$work/files" | while IFS= read -r f; do
  case "$f" in "$root"/*) continue ;; esac
  for d in "${build_dirs[@]}"; do case "$f" in "$d"/*) continue 2 ;; esac; done
  [ -f "$f" ] || [ -L "$f" ] && [ ! -d "$f" ] && echo "$f"
done >"$work/used"

# --- owner of every file ------------------------------------------------------------------
# dpkg records /lib/... or /usr/lib/... depending on the package (merged /usr) and symlinks
# as themselves: ask for every spelling at once, then take the first that a package owns.
while IFS= read -r f; do
  r="$(readlink -f "$f")"
  printf '%s\t%s\t%s\t%s\t%s\n' "$f" "$f" "/usr$f" "${f#/usr}" "$r"
done <"$work/used" >"$work/spellings"
cut -f2- "$work/spellings" | tr '\t' '\n' | sort -u | grep -v '^$' >"$work/candidates"
xargs -r -d '\n' dpkg -S <"$work/candidates" 2>/dev/null | grep -v '^diversion' >"$work/owners" || true
awk -F'\t' '
  FILENAME == ARGV[1] {  # "pkg1, pkg2: /path"
    i = index($0, ": "); pkgs = substr($0, 1, i - 1); path = substr($0, i + 2)
    gsub(/:[a-z0-9]+/, "", pkgs); gsub(/ /, "", pkgs); owner[path] = pkgs; next
  }
  {
    o = ""
    for (i = 2; i <= NF && o == ""; i++) if ($i in owner) o = owner[$i]
    print $1 "\t" (o == "" ? "-" : o)
  }' "$work/owners" "$work/spellings" >"$work/file-owner"

# --- verdict --------------------------------------------------------------------------------
awk -F'\t' -v allowed="$work/allowed" -v root="$root" '
  BEGIN { while ((getline p < allowed) > 0) ok[p] = 1 }
  {
    file = $1
    if ($2 == "-") {
      if (file ~ /^\/usr\/local\/cuda/) { optional++; next }
      unowned[file] = 1; bad = 1; next
    }
    n = split($2, pkgs, ",")
    good = 0
    for (i = 1; i <= n; i++) if (pkgs[i] in ok) good = 1
    if (!good) { missing[$2] = missing[$2] (count[$2] < 3 ? "\n      " file : ""); count[$2]++; bad = 1 }
    checked++
  }
  END {
    for (p in missing)
      printf "check-install-deps: FAIL: package %s is used (%d file%s) but scripts/install-deps.sh does not install it (nor anything that depends on it):%s\n", p, count[p], count[p] == 1 ? "" : "s", missing[p] > "/dev/stderr"
    for (f in unowned)
      printf "check-install-deps: FAIL: %s is used but no Debian package owns it (installed by hand?)\n", f > "/dev/stderr"
    if (!bad) printf "check-install-deps: %d files the build and tests use, all from packages scripts/install-deps.sh installs (or Priority required/important); %d optional CUDA files\n", checked, optional
    exit bad
  }' "$work/file-owner" || {
  echo "check-install-deps: add the package(s) above to APT_PACKAGES in scripts/install-deps.sh" >&2
  exit 1
}

# --- npm ------------------------------------------------------------------------------------
node "$root/tests/deps/check_npm_deps.mjs" "$root" "$cache"
