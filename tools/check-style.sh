#!/usr/bin/env bash
# Style gate (STYLE.md "Banned calls", "Mechanical format"):
#   1. no banned calls in src/ and tests/unit/ C files: sprintf vsprintf strcpy
#      strcat strtok atoi atol gets rand srand system, and no raw
#      malloc/calloc/realloc/free outside src/core/xmalloc.c (use the x* family);
#   2. every *.c / *.h under src/, tests/ and bench/ (tracked or untracked, not
#      ignored) is clang-format clean against the checked-in .clang-format.
# Prints file:line for each finding and exits 1; prints "style: OK (N files)".
#
# Comments, string and character literals are blanked before matching, so a
# banned name in prose or in a message does not count. Identifiers that merely
# end with a banned name (xfree, json_free) and member calls (ops->free(p),
# alloc.free(p)) are not the libc call and are not flagged.
#
# Escape hatch, for memory another library hands over with malloc (e.g. the
# string json_dumps returns): put "style: allow NAME -- reason" in a comment on
# the same line, e.g.  free(text); /* style: allow free -- json_dumps mallocs */
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec python3 - "$@" <<'PYTHON'
import os
import re
import shutil
import subprocess
import sys

BANNED = re.compile(
    r"(?<![A-Za-z0-9_.])(?<!->)"
    r"\b(sprintf|vsprintf|strcpy|strcat|strtok|atoi|atol|gets|rand|srand|system)\s*\("
)
RAW_ALLOC = re.compile(r"(?<![A-Za-z0-9_.])(?<!->)\b(malloc|calloc|realloc|free)\s*\(")
ALLOW = re.compile(r"style:\s*allow\s+([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)")
ALLOCATOR_FILE = "src/core/xmalloc.c"
BANNED_SCAN_DIRS = ("src/", "tests/unit/")
FORMAT_DIRS = ("src", "tests", "bench")
C_EXTENSIONS = (".c", ".h")


def list_sources():
    """Tracked and untracked, non-ignored C files under FORMAT_DIRS."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--"]
            + list(FORMAT_DIRS),
            check=True,
            capture_output=True,
        ).stdout.decode()
        paths = [p for p in out.split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        paths = []
        for top in FORMAT_DIRS:
            for dirpath, dirnames, filenames in os.walk(top):
                dirnames[:] = [d for d in dirnames if not d.startswith("build")]
                paths += [os.path.join(dirpath, f) for f in filenames]
    keep = set()
    for p in paths:
        if not p.endswith(C_EXTENSIONS) or not os.path.isfile(p):
            continue
        if any(part.startswith("build") for part in p.split("/")[:-1]):
            continue
        keep.add(p)
    return sorted(keep)


def blank_comments_and_literals(text):
    """Returns text with comments and string/char literal contents replaced
    by spaces; newlines are kept so line numbers stay valid."""
    out = []
    i, n = 0, len(text)
    state = "code"
    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if state == "code":
            if c == "/" and nxt == "/":
                state = "line_comment"
                out.append("  ")
                i += 2
                continue
            if c == "/" and nxt == "*":
                state = "block_comment"
                out.append("  ")
                i += 2
                continue
            if c in "\"'":
                state = c
            out.append(c)
        elif state == "line_comment":
            if c == "\n":
                state = "code"
                out.append(c)
            else:
                out.append(" ")
        elif state == "block_comment":
            if c == "*" and nxt == "/":
                state = "code"
                out.append("  ")
                i += 2
                continue
            out.append("\n" if c == "\n" else " ")
        else:  # inside a "..." or '...' literal; state is the quote
            if c == "\\" and nxt:
                out.append("  " if nxt != "\n" else " \n")
                i += 2
                continue
            if c == state or c == "\n":  # an unterminated literal ends at the line
                state = "code"
                out.append(c)
            else:
                out.append(" ")
        i += 1
    return "".join(out)


def banned_findings(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        raw = f.read()
    raw_lines = raw.split("\n")
    code_lines = blank_comments_and_literals(raw).split("\n")
    check_alloc = path != ALLOCATOR_FILE
    findings = []
    for number, (code, original) in enumerate(zip(code_lines, raw_lines), start=1):
        allowed = set()
        for m in ALLOW.finditer(original):
            allowed.update(name.strip() for name in m.group(1).split(","))
        hits = [m.group(1) for m in BANNED.finditer(code)]
        if check_alloc:
            hits += [m.group(1) + " (use the xmalloc family)" for m in RAW_ALLOC.finditer(code)]
        for hit in hits:
            if hit.split(" ")[0] in allowed:
                continue
            findings.append("%s:%d: banned call %s: %s" % (path, number, hit, original.strip()))
    return findings


def format_findings(paths, clang_format):
    """Runs clang-format --dry-run --Werror over paths.
    Returns {path: sorted line numbers that differ} and any other output."""
    differing, other = {}, []
    for start in range(0, len(paths), 100):
        chunk = paths[start : start + 100]
        proc = subprocess.run(
            [clang_format, "--dry-run", "--Werror", "--style=file"] + chunk,
            capture_output=True,
            text=True,
        )
        for line in (proc.stdout + proc.stderr).splitlines():
            m = re.match(r"^(.+?):(\d+):\d+: (?:error|warning): code should be clang-format", line)
            if m:
                differing.setdefault(m.group(1), set()).add(int(m.group(2)))
            elif re.match(r"^\S.*: (error|warning|fatal error): ", line):
                other.append(line)
        if proc.returncode != 0 and not differing and not other:
            other.append("clang-format exited %d" % proc.returncode)
    return {p: sorted(lines) for p, lines in differing.items()}, other


def print_format_findings(differing, lines_per_file=10):
    for path in sorted(differing):
        with open(path, encoding="utf-8", errors="replace") as f:
            source = f.read().split("\n")
        numbers = differing[path]
        for number in numbers[:lines_per_file]:
            text = source[number - 1].strip() if number <= len(source) else ""
            print("%s:%d: not clang-format clean: %s" % (path, number, text[:80].rstrip()))
        if len(numbers) > lines_per_file:
            print("%s: ... and %d more line(s)" % (path, len(numbers) - lines_per_file))


def main():
    sources = list_sources()
    failed = False

    scanned = [p for p in sources if p.startswith(BANNED_SCAN_DIRS)]
    findings = []
    for path in scanned:
        findings += banned_findings(path)
    if findings:
        failed = True
        print("\n".join(findings))
        print("style: %d banned call(s); see STYLE.md" % len(findings))

    clang_format = os.environ.get("CLANG_FORMAT") or shutil.which("clang-format")
    if not clang_format:
        print("style: clang-format not found (make deps installs it)")
        return 1
    differing, other = format_findings(sources, clang_format)
    if other:
        failed = True
        print("\n".join(other))
    if differing:
        failed = True
        print_format_findings(differing)
        print("style: %d file(s) differ from .clang-format; fix with:" % len(differing))
        print("  clang-format -i " + " ".join(sorted(differing)))

    if failed:
        return 1
    print("style: OK (%d files)" % len(sources))
    return 0


sys.exit(main())
PYTHON
