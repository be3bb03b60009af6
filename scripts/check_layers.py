"""The import graph of the package: no cycle, and every arrow pointing down the layers.

    python scripts/check_layers.py          # prints the problems, exit 1 if any

Layers, bottom to top: bigearth (the core: record, nomenclature, files, errors, options) <
dataset_builder < sr_lab (training and judging the super-resolution networks) < shards <
reference_train < bigearth_cli (the command line, imported by nothing). Every import counts, at
module level or inside a function ("hidden" ones too), and a name imported from a private
module attribute (``_name`` of another module) is reported.

Within a package, its modules and sub-packages point one way too: a module that imports from a
sub-package whose modules import that module back (``upsample`` -> ``sr.infer`` while
``sr.evaluate`` -> ``upsample``) is a cycle between the two, reported as one even when no two
modules form a cycle of their own.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("bigearth", "dataset_builder", "sr_lab", "shards", "reference_train", "bigearth_torchgeo", "bigearth_cli")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    out = {}
    for top in LAYERS:
        for p in (ROOT / top).rglob("*.py"):
            if "dummy_data" not in p.parts:
                out[module_name(p)] = p
    return out


def imports(name: str, path: Path, known: dict) -> list[tuple[str, int, str]]:
    """(imported internal module, line, private name or '') for every import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in LAYERS:
                    out.append((_known(a.name, known), node.lineno, ""))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] not in LAYERS:
                continue
            for a in node.names:
                sub = f"{mod}.{a.name}"
                if sub in known:  # `from pkg import submodule`
                    out.append((sub, node.lineno, ""))
                else:
                    out.append((_known(mod, known), node.lineno, a.name if a.name.startswith("_") and not a.name.endswith("__") else ""))
    return out


def _known(mod: str, known: dict) -> str:
    while mod and mod not in known:
        mod = mod.rpartition(".")[0]
    return mod


def layer(mod: str) -> int:
    return LAYERS.index(mod.split(".")[0])


def problems() -> list[str]:
    known = modules()
    graph: dict[str, set[str]] = {m: set() for m in known}
    found = []
    for name, path in sorted(known.items()):
        for target, line, private in imports(name, path, known):
            if not target or target == name:
                continue
            rel = path.relative_to(ROOT)
            if layer(target) > layer(name):
                found.append(f"{rel}:{line}: imports {target}, a layer above ({LAYERS[layer(name)]} < "
                             f"{LAYERS[layer(target)]})")
            if private:
                found.append(f"{rel}:{line}: imports the private name {private} of {target}")
            graph[name].add(target)
    found += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    found += [f"import cycle between the parts of {pkg}: {' <-> '.join(c)}" for pkg, c in part_cycles(graph, known)]
    return found


def part_cycles(graph: dict[str, set[str]], known: dict) -> list[tuple[str, list[str]]]:
    """(package, cycle) for every package whose parts (its modules and its sub-packages, each
    sub-package one node) import one another round in a cycle."""
    packages = {m for m, p in known.items() if p.name == "__init__.py"}
    out = []
    for pkg in sorted(packages):
        if not any(s.startswith(pkg + ".") for s in packages):  # no sub-package: the module cycles say it all
            continue

        def part(m: str, pkg=pkg) -> str | None:
            if not m.startswith(pkg + "."):
                return None
            return pkg + "." + m[len(pkg) + 1:].split(".")[0]
        parts: dict[str, set[str]] = {}
        for m, targets in graph.items():
            a = part(m)
            if a is None:
                continue
            parts.setdefault(a, set())
            parts[a] |= {b for b in map(part, targets) if b is not None and b != a}
        out += [(pkg, c) for c in cycles(parts)]
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan). A package's
    ``__init__`` importing its own submodules is the usual way to export them, not a cycle: those
    edges are left out."""
    edges = {m: {t for t in ts if not (t.startswith(m + "."))} for m, ts in graph.items()}
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    found = problems()
    for p in found:
        print(p)
    print(f"{len(found)} problem(s) in the import graph of {', '.join(LAYERS)}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
