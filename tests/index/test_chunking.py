"""Chunking: tree-sitter definitions in ten languages, size window, line windows, stable ids."""

from __future__ import annotations

import pytest
from repotune.server.index.chunking import chunk_file
from repotune.server.languages import language_for

SAMPLES: dict[str, tuple[str, str, set[tuple[str, str]]]] = {
    "python": (
        "m.py",
        "import os\n\n\nclass Store:\n    def get(self, key: str) -> int:\n        return 1\n\n"
        "\ndef open_store(path):\n    return Store()\n",
        {("class", "Store"), ("function", "open_store")},
    ),
    "javascript": (
        "m.js",
        "function parseArgs(argv) {\n  return argv;\n}\n"
        "const toUpper = (s) => {\n  return s.toUpperCase();\n};\n"
        "class Cli {\n  run() { return 1; }\n}\n",
        {("function", "parseArgs"), ("function", "toUpper"), ("class", "Cli")},
    ),
    "typescript": (
        "m.ts",
        "export interface Options {\n  depth: number;\n}\nexport class Walker {\n"
        "  walk(o: Options): void {}\n}\n"
        "export function make(): Walker {\n  return new Walker();\n}\n",
        {("interface", "Options"), ("class", "Walker"), ("function", "make")},
    ),
    "tsx": (
        "m.tsx",
        "export const Button = (props: { label: string }) => (\n"
        "  <button>{props.label}</button>\n);\n"
        "export function App() {\n  return <Button label='x' />;\n}\n",
        {("function", "Button"), ("function", "App")},
    ),
    "go": (
        "m.go",
        "package m\n\ntype Server struct {\n\tport int\n}\n\nfunc (s *Server) Run(x int) error {\n"
        "\treturn nil\n}\n\nfunc New() *Server {\n\treturn &Server{}\n}\n",
        {("type", "Server"), ("method", "Server.Run"), ("function", "New")},
    ),
    "rust": (
        "m.rs",
        "pub struct Point { x: i32 }\n\nimpl Point {\n    pub fn norm(&self) -> i32 {\n"
        "        self.x\n    }\n}\n\nfn main() {}\n",
        {("struct", "Point"), ("impl", "Point"), ("function", "main")},
    ),
    "java": (
        "M.java",
        "public class Greeter {\n  public Greeter() {\n    super();\n  }\n"
        "  public String greet(String n) {\n"
        "    return n;\n  }\n}\n",
        {("constructor", "Greeter.Greeter"), ("method", "Greeter.greet")},
    ),
    "c": (
        "m.c",
        "#include <stdio.h>\n\nstruct point { int x; };\n\nstatic int add(int a, int b) {\n"
        "  return a + b;\n}\n",
        {("struct", "point"), ("function", "add")},
    ),
    "cpp": (
        "m.cpp",
        "namespace geo {\nclass Shape {\n public:\n  virtual double area() const = 0;\n};\n}\n\n"
        "double Circle::area() const {\n  return 3.14;\n}\n",
        {("class", "geo.Shape"), ("method", "Circle.area")},
    ),
    "c_sharp": (
        "m.cs",
        "namespace App {\n  public class Repo {\n    public int Count(int x) {\n      return x;\n"
        "    }\n  }\n}\n",
        {("namespace", "App")},
    ),
    "ruby": (
        "m.rb",
        "module Billing\n  class Invoice\n    def total(items)\n      items.sum\n    end\n  end\n"
        "end\n",
        {("module", "Billing")},
    ),
}


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_definitions_per_language(language: str) -> None:
    path, source, expected = SAMPLES[language]
    assert language_for(path) == language
    # a tiny window splits the containers; definitions of 3+ lines are not merged away
    chunks = chunk_file(path, source, "h", chunk_lines=5, chunk_overlap=1)
    found = {(c.kind, c.symbol) for c in chunks}
    assert expected <= found, found
    for chunk in chunks:
        assert chunk.language == language and chunk.path == path and chunk.file_hash == "h"
        lines = source.splitlines()[chunk.start_line - 1 : chunk.end_line]
        assert chunk.text == "\n".join(lines)
    signatures = {c.symbol: c.signature for c in chunks if c.signature}
    assert signatures  # every language yields at least one signature


def test_methods_carry_enclosing_class_and_signature() -> None:
    methods = "\n".join(
        f"    def method_{i}(self, value: int) -> int:\n"
        + "\n".join(f"        value += {j}" for j in range(12))
        + "\n        return value\n"
        for i in range(6)
    )
    source = f"class Accumulator:\n    '''Adds things.'''\n\n{methods}"
    chunks = chunk_file("acc.py", source, "h", chunk_lines=30, chunk_overlap=5)
    by_symbol = {c.symbol: c for c in chunks}
    method = by_symbol["Accumulator.method_3"]
    assert method.kind == "method"
    assert method.parent == "Accumulator"
    assert method.signature == "def method_3(self, value: int) -> int"
    assert all(c.end_line - c.start_line + 1 <= 30 for c in chunks)
    covered = set()
    for c in chunks:
        covered.update(range(c.start_line, c.end_line + 1))
    assert covered == set(range(1, len(source.splitlines()) + 1))


def test_long_function_is_split_in_overlapping_windows_and_tiny_ones_merged() -> None:
    body = "\n".join(f"    total += {i}" for i in range(150))
    tiny = "\n".join(f"def tiny_{i}():\n    return {i}\n" for i in range(6))
    source = f"def long_one(total):\n{body}\n    return total\n\n{tiny}"
    chunks = chunk_file("x.py", source, "h", chunk_lines=60, chunk_overlap=10)
    long_parts = [c for c in chunks if c.symbol == "long_one"]
    assert len(long_parts) == 3
    assert all(c.end_line - c.start_line + 1 <= 60 for c in long_parts)
    assert long_parts[1].start_line == long_parts[0].end_line - 9  # 10 lines of overlap
    tiny_chunks = [c for c in chunks if c.symbol and c.symbol.startswith("tiny_")]
    assert len(tiny_chunks) == 1  # six 2-line functions merged into one chunk
    assert "def tiny_5" in tiny_chunks[0].text


def test_text_files_use_overlapping_line_windows() -> None:
    text = "\n".join(f"- item {i}" for i in range(130))
    for path, language in [("README.md", "markdown"), ("ci.yaml", "yaml"), ("run.sh", "shell")]:
        chunks = chunk_file(path, text, "h", chunk_lines=60, chunk_overlap=10)
        assert [(c.start_line, c.end_line) for c in chunks] == [(1, 60), (51, 110), (101, 130)]
        assert {c.kind for c in chunks} == {"text"} and chunks[0].language == language


def test_ids_are_stable_and_change_only_for_touched_chunks() -> None:
    source = "def a():\n" + "    x = 1\n" * 20 + "\n\ndef b():\n" + "    y = 2\n" * 20
    first = chunk_file("m.py", source, "h1")
    again = chunk_file("m.py", source, "h1")
    assert [c.id for c in first] == [c.id for c in again]
    edited = chunk_file("m.py", source.replace("y = 2", "y = 3", 1), "h2")
    assert first[0].id == edited[0].id  # a() untouched: its vector can be kept
    assert first[1].id != edited[1].id
    assert len({c.id for c in first}) == len(first)
    assert chunk_file("other.py", source, "h1")[0].id != first[0].id


def test_broken_and_empty_sources_do_not_crash() -> None:
    assert chunk_file("e.py", "", "h") == []
    chunks = chunk_file("b.py", "def broken(:\n    pass\nclass\n", "h")
    assert chunks and chunks[0].start_line == 1


def test_chunks_record_the_names_they_define() -> None:
    """Retrieval looks definitions up by name: every definition's name belongs to the chunk
    holding its first line, merged tiny neighbours included; continuation windows define none."""
    body = "\n".join(f"    total += {i}" for i in range(150))
    tiny = "\n".join(f"def tiny_{i}():\n    return {i}\n" for i in range(6))
    source = f"def long_one(total):\n{body}\n    return total\n\n{tiny}"
    chunks = chunk_file("x.py", source, "h", chunk_lines=60, chunk_overlap=10)
    defined = {name: c for c in chunks for name in c.defines}
    assert set(defined) == {"long_one", *(f"tiny_{i}" for i in range(6))}
    assert defined["long_one"].start_line == 1
    assert [c for c in chunks if "long_one" in c.defines] == [chunks[0]]
    assert all(f"def tiny_{i}()" in defined[f"tiny_{i}"].text for i in range(6))

    methods = "\n".join(
        f"    def method_{i}(self):\n" + "        x = 1\n" * 12 + "        return x\n"
        for i in range(4)
    )
    chunks = chunk_file("acc.py", f"class Accumulator:\n    '''Adds.'''\n\n{methods}", "h", 30, 5)
    defined = {name: c for c in chunks for name in c.defines}
    assert set(defined) == {"Accumulator", *(f"method_{i}" for i in range(4))}
    assert defined["Accumulator"].start_line == 1

    cpp = chunk_file("m.cpp", SAMPLES["cpp"][1], "h", chunk_lines=5, chunk_overlap=1)
    assert {"Shape", "area"} <= {n for c in cpp for n in c.defines}
    assert "geo" not in {n for c in cpp for n in c.defines}  # a namespace defines no name
    rust = chunk_file("m.rs", SAMPLES["rust"][1], "h", chunk_lines=5, chunk_overlap=1)
    point = [c for c in rust if "Point" in c.defines]
    assert [c.kind for c in point] == ["struct"]  # the impl block does not define Point


# Each file fits in one default-size chunk; namespaces, modules and classes are kept whole, so
# the chunk must record the names defined inside them, at any depth (locals of functions not).
DEFAULT_SIZE_DEFINES: dict[str, tuple[str, str, set[str]]] = {
    "c_sharp": (
        "Billing.cs",
        "using System;\n\nnamespace Shop.Billing\n{\n    public class Invoice\n    {\n"
        "        public Invoice(int id) { Id = id; }\n        public int Id { get; }\n"
        "        public decimal Total(decimal[] lines)\n        {\n"
        "            return lines.Sum();\n        }\n    }\n\n"
        "    public interface IPayer\n    {\n        void Pay(Invoice invoice);\n    }\n}\n",
        {"Invoice", "Total", "IPayer", "Pay"},
    ),
    "c_sharp_file_scoped": (
        "Ledger.cs",
        "namespace Shop.Ledger;\n\npublic class Ledger\n{\n"
        "    public void Post(int amount) { }\n}\n",
        {"Ledger", "Post"},
    ),
    "cpp": (
        "billing.cpp",
        "#include <vector>\n\nnamespace shop {\nnamespace billing {\n\nclass Invoice {\n"
        " public:\n  double total() const { return 0.0; }\n};\n\n"
        "double tax_for(const Invoice& invoice) {\n  return invoice.total() * 0.2;\n}\n\n"
        "}  // namespace billing\n}  // namespace shop\n",
        {"Invoice", "total", "tax_for"},
    ),
    "ruby": (
        "billing.rb",
        "module Shop\n  module Billing\n    class Invoice\n      def total(items)\n"
        "        items.sum\n      end\n\n      def self.build\n        new\n      end\n"
        "    end\n\n    def self.tax_for(invoice)\n      invoice.total * 0.2\n    end\n"
        "  end\nend\n",
        {"Shop", "Billing", "Invoice", "total", "build", "tax_for"},
    ),
    "rust": (
        "billing.rs",
        "mod billing {\n    pub struct Invoice { pub lines: Vec<f64> }\n\n    impl Invoice {\n"
        "        pub fn total(&self) -> f64 {\n            self.lines.iter().sum()\n        }\n"
        "    }\n\n    pub fn tax_for(invoice: &Invoice) -> f64 {\n"
        "        invoice.total() * 0.2\n    }\n}\n",
        {"billing", "Invoice", "total", "tax_for"},
    ),
    "typescript": (
        "billing.ts",
        "export namespace Billing {\n  export class Invoice {\n    total(): number {\n"
        "      return 0;\n    }\n  }\n  export function taxFor(invoice: Invoice): number {\n"
        "    return invoice.total() * 0.2;\n  }\n}\n\n"
        'declare module "shop-ledger" {\n  export function post(amount: number): void;\n'
        "  export interface Entry {\n    amount: number;\n  }\n}\n",
        {"Billing", "Invoice", "total", "taxFor", "Entry"},
    ),
    "java": (
        "Invoice.java",
        "package shop.billing;\n\nimport java.util.List;\n\npublic class Invoice {\n"
        "  public Invoice() {}\n\n  public double total(List<Double> lines) {\n"
        "    return 0;\n  }\n\n  static class Line {\n    double amount() { return 0; }\n  }\n}\n",
        {"Invoice", "total", "Line", "amount"},
    ),
    "python": (
        "billing.py",
        "class Invoice:\n    def total(self, lines):\n        def add(a, b):\n"
        "            return a + b\n        return sum(lines)\n\n    class Line:\n"
        "        def amount(self):\n            return 0\n\n\ndef tax_for(invoice):\n"
        "    return invoice.total([]) * 0.2\n",
        {"Invoice", "total", "Line", "amount", "tax_for"},
    ),
    "javascript": (
        "billing.js",
        "class Invoice {\n  total(lines) {\n    const add = (a, b) => a + b;\n"
        "    return lines.reduce(add, 0);\n  }\n}\n\nfunction taxFor(invoice) {\n"
        "  return invoice.total([]) * 0.2;\n}\n",
        {"Invoice", "total", "taxFor"},
    ),
    "go": (
        "billing.go",
        "package billing\n\ntype Invoice struct {\n\tLines []float64\n}\n\n"
        "func (i *Invoice) Total() float64 {\n\treturn 0\n}\n\n"
        "func TaxFor(i *Invoice) float64 {\n\treturn i.Total() * 0.2\n}\n",
        {"Invoice", "Total", "TaxFor"},
    ),
    "c": (
        "billing.c",
        "struct invoice {\n  double total;\n};\n\nstatic double tax_for(struct invoice *i) {\n"
        "  return i->total * 0.2;\n}\n",
        {"invoice", "tax_for"},
    ),
}


@pytest.mark.parametrize("case", sorted(DEFAULT_SIZE_DEFINES))
def test_names_inside_namespaces_modules_and_classes_are_defined_at_the_default_size(
    case: str,
) -> None:
    from repotune.server.config import Settings

    path, source, expected = DEFAULT_SIZE_DEFINES[case]
    index = Settings().index
    chunks = chunk_file(path, source, "h", index.chunk_lines, index.chunk_overlap)
    defined = [name for c in chunks for name in c.defines]
    assert set(defined) == expected, [(c.kind, c.symbol, c.defines) for c in chunks]
    assert len(defined) == len(set(defined))  # each name once
    # a function's locals (Python `add`, JavaScript `add`) are not reachable from other files
    assert "add" not in defined
