#!/usr/bin/env python3
"""The longest function bodies in C++ sources, for the "no function over 80 lines" rule.

    tools/longest_functions.py [-n 10] [--over 80] [paths...]   (default: modules pipelines)

A heuristic, not a parser: a function is a brace block opened at namespace or class level after a
parameter list (`) {`, `) const {`, `) override {`, an initializer list, ...); lambdas and blocks
inside it count towards it. Strings, character literals, comments and preprocessor lines are skipped. Schema
declarations (functions named *_schema) are listed but marked, as the rule sets them aside.
Exit status 1 with --over N when a function other than a schema declaration is longer than N lines.
"""
import argparse
import pathlib
import re
import sys

CONTROL = re.compile(r'^\s*(if|for|while|switch|catch|do|else)\b')
TYPE_BLOCK = re.compile(r'\b(namespace|class|struct|enum|union)\b[^()]*$')


def strip_code(text):
    """The text with comments, strings and character literals blanked out (newlines kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith('//', i):
            j = text.find('\n', i)
            j = n if j < 0 else j
            out.append(' ' * (j - i)); i = j
        elif text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j])); i = j
        elif text.startswith('R"', i):
            m = re.match(r'R"([^(]*)\(', text[i:])
            end = text.find(')' + m.group(1) + '"', i) if m else -1
            j = n if end < 0 else end + len(m.group(1)) + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j])); i = j
        elif c in '"\'':
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == '\\' else 1
            out.append(c + ' ' * (j - i - 1) + c); i = j + 1
        else:
            out.append(c); i += 1
    return ''.join(out)


def blank_preprocessor(code):
    """Preprocessor directives (and their continuation lines) blanked out, newlines kept."""
    lines, out, continued = code.split('\n'), [], False
    for line in lines:
        directive = continued or line.lstrip().startswith('#')
        continued = directive and line.rstrip().endswith('\\')
        out.append(' ' * len(line) if directive else line)
    return '\n'.join(out)


def functions(path):
    code = blank_preprocessor(strip_code(path.read_text(encoding='utf-8', errors='replace')))
    stack = []          # for each open brace: ('function', start line, name) or ('scope', ...)
    header_start = 0    # offset where the current declaration began
    found = []
    for i, c in enumerate(code):
        if c in ';{}':
            if c == '{':
                head = code[header_start:i]
                in_function = any(kind == 'function' for kind, _, _ in stack)
                is_function = (not in_function and ')' in head and not CONTROL.match(head)
                               and not TYPE_BLOCK.search(head.split('(')[0]) and '=' not in head.split('(')[0])
                if is_function:
                    stripped = head.lstrip()
                    start = code.count('\n', 0, header_start + len(head) - len(stripped)) + 1
                    name = re.findall(r'([~\w:]+)\s*\(', head)
                    stack.append(('function', start, name[0] if name else '?'))
                else:
                    stack.append(('scope', 0, ''))
            elif c == '}' and stack:
                kind, start, name = stack.pop()
                if kind == 'function':
                    end = code.count('\n', 0, i) + 1
                    found.append((end - start + 1, start, name))
            header_start = i + 1
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('-n', type=int, default=10, help='how many to list')
    ap.add_argument('--over', type=int, default=0, help='fail when a function is longer than this')
    ap.add_argument('paths', nargs='*', default=['modules', 'pipelines'])
    args = ap.parse_args()
    rows = []
    for root in args.paths:
        root = pathlib.Path(root)
        for path in sorted([root] if root.is_file() else list(root.rglob('*.cpp')) + list(root.rglob('*.h'))):
            rows += [(lines, f'{path}:{line}', name) for lines, line, name in functions(path)]
    rows.sort(key=lambda r: -r[0])
    for lines, where, name in rows[:args.n]:
        print(f'{lines:5d}  {where}  {name}{"  (schema declaration)" if name.endswith("_schema") else ""}')
    if args.over:
        long = [r for r in rows if r[0] > args.over and not r[2].endswith('_schema')]
        if long:
            print(f'{len(long)} function(s) over {args.over} lines', file=sys.stderr)
            return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
