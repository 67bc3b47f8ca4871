"""An abstention is checked against the snippets the model was given (pure logic)."""

from __future__ import annotations

from repotune.server.ask.grounding import (
    NameSite,
    also_defined,
    contradicting_definition,
    grounded_opening,
    is_abstention,
    name_sites,
    name_words,
    subject_definition,
    unsupported_name,
)
from repotune.server.completion.context import ContextSnippet

GEOMETRY = ContextSnippet(
    path="geometry.py",
    start_line=1,
    text='"""Shapes."""\nimport math\n\n\ndef area_of_circle(radius: float) -> float:\n'
    "    return math.pi * radius * radius\n\n\ndef area_of_square(side: float) -> float:\n"
    "    return side * side\n",
)
SETTINGS = ContextSnippet(
    path="app/settings.ts",
    start_line=40,
    text="export const retryLimit = 3;\nexport class HttpClient {\n  timeoutMs: number = 5;\n}\n",
)
ABSTAIN = "The indexed code does not define the area of a circle."


def test_definitions_are_found_with_their_lines_in_several_languages() -> None:
    found = name_sites([GEOMETRY, SETTINGS])
    assert NameSite("area_of_circle", "geometry.py", 5) in found
    assert NameSite("area_of_square", "geometry.py", 9) in found
    assert NameSite("retryLimit", "app/settings.ts", 40) in found
    assert NameSite("HttpClient", "app/settings.ts", 41) in found
    assert [d.name for d in found][:2] == ["area_of_circle", "area_of_square"]  # snippet order


def test_an_abstention_denying_a_defined_name_is_contradicted() -> None:
    denied = contradicting_definition(
        "Where is area_of_square defined?",
        "The indexed code does not define area_of_square.",
        [GEOMETRY],
    )
    assert denied == NameSite("area_of_square", "geometry.py", 9)
    assert grounded_opening(denied) == "`area_of_square` (geometry.py:9)"


def test_a_description_whose_words_name_a_definition_contradicts_it() -> None:
    question = "Which function computes the area of a circle?"
    assert contradicting_definition(question, ABSTAIN, [GEOMETRY]).name == "area_of_circle"
    camel = contradicting_definition("What is the retry limit?", ABSTAIN, [SETTINGS])
    assert camel is not None and camel.name == "retryLimit"


def test_a_true_abstention_stands() -> None:
    # a name the snippets do not define (the trained abstention case), or words matching nothing
    assert (
        contradicting_definition(
            "What does area_of_triangle return?",
            "The indexed code does not define `area_of_triangle`.",
            [GEOMETRY],
        )
        is None
    )
    assert contradicting_definition("How are users logged in?", ABSTAIN, [GEOMETRY]) is None
    # one shared word is not enough: "area" alone does not pick area_of_square
    assert contradicting_definition("What is the area?", ABSTAIN, [GEOMETRY]) is None


def test_an_answer_that_does_not_abstain_is_left_alone() -> None:
    answer = "`area_of_circle` (geometry.py:5) multiplies pi by the radius squared."
    assert not is_abstention(answer)
    assert contradicting_definition("Where is area_of_circle?", answer, [GEOMETRY]) is None


def test_name_words_split_snake_and_camel_case_without_filler() -> None:
    assert name_words("area_of_circle") == {"area", "circle"}
    assert name_words("HTTPRetryLimits") == {"http", "retry", "limit"}
    assert name_words("get_value") == set()


def test_an_answer_about_a_name_no_snippet_contains_is_unsupported() -> None:
    invented = "Area_of_triangle is the sum of the areas of a triangle with given sides."
    assert unsupported_name("What does area_of_triangle return?", invented, [GEOMETRY]) == (
        "area_of_triangle"
    )
    assert unsupported_name("What does `Polygon.perimeter` do?", "It adds.", [GEOMETRY]) == (
        "perimeter"
    )
    assert unsupported_name("What is retryLimit?", "Three.", [GEOMETRY]) == "retryLimit"
    # names the snippets contain, plain words, and abstentions are fine
    assert unsupported_name("What does area_of_circle do?", "Pi r squared.", [GEOMETRY]) is None
    assert unsupported_name("How is the area computed?", "With pi.", [GEOMETRY]) is None
    assert unsupported_name("What is retryLimit?", ABSTAIN, [GEOMETRY]) is None


def test_the_subject_of_a_question_is_the_definition_it_names() -> None:
    # a written name, then a description whose words name a definition; in snippet order
    where = subject_definition("Where is area_of_square defined?", [GEOMETRY, SETTINGS])
    assert where == NameSite("area_of_square", "geometry.py", 9)
    assert subject_definition("How is the retry limit set?", [GEOMETRY, SETTINGS]) == NameSite(
        "retryLimit", "app/settings.ts", 40
    )
    # nothing named, one shared word, or a name the snippets do not define: no subject
    assert subject_definition("How are users logged in?", [GEOMETRY]) is None
    assert subject_definition("What is the area?", [GEOMETRY]) is None
    assert subject_definition("What does area_of_triangle return?", [GEOMETRY]) is None


BILLING = ContextSnippet(
    path="shop/billing.py",
    start_line=10,
    text="class Invoice:\n"
    "    def total(self, items: list[float], tax: float = 0.2) -> float:\n"
    '        """Sum the items and add the tax. Rounded to cents."""\n'
    "        return round(sum(items) * (1 + tax), 2)\n",
)
RECEIPT = ContextSnippet(
    path="shop/receipt.py",
    start_line=3,
    text="class Receipt:\n    def total(self) -> float:\n        return self.amount\n",
)


def test_an_opening_says_what_the_code_says_as_training_references_do() -> None:
    from repotune.server.ask.definitions import Definition, lead

    site = subject_definition("What does `Invoice.total` do?", [RECEIPT, BILLING])
    assert site == NameSite("Invoice.total", "shop/billing.py", 11)
    opening = grounded_opening(site, [RECEIPT, BILLING])
    lead_line, quoted = opening.split("\n", 1)
    assert lead_line == "`Invoice.total` (shop/billing.py:11): Sum the items and add the tax."
    assert quoted.startswith("```python\ndef total(self, items: list[float], tax: float = 0.2)")
    assert quoted.endswith("return round(sum(items) * (1 + tax), 2)\n```")
    # the same words a training reference answer opens with for this definition
    reference = Definition(
        "shop/billing.py", "function_definition", 0, 0, 11, 13, name="Invoice.total",
        kind="method", summary="Sum the items and add the tax.",
    )  # fmt: skip
    assert lead_line == lead(reference)
    # no docstring: what the signature says
    square = grounded_opening(NameSite("area_of_square", "geometry.py", 9), [GEOMETRY])
    assert square.split("\n")[0] == (
        "`area_of_square` (geometry.py:9) is a function taking `side` and returning `float`."
    )


def test_a_dotted_name_picks_the_owners_member() -> None:
    assert subject_definition("Explain `Receipt.total`.", [BILLING, RECEIPT]) == NameSite(
        "Receipt.total", "shop/receipt.py", 4
    )
    # an owner that no snippet shows: another class's member is not cited as its
    assert subject_definition("What is `Cart.total`?", [BILLING]) == NameSite(
        "total", "shop/billing.py", 11
    )


def test_a_pasted_docstring_sentence_finds_its_definition() -> None:
    question = 'What should I use for this: "Sum the items and add the tax."'
    assert subject_definition(question, [RECEIPT, BILLING]) == NameSite(
        "total", "shop/billing.py", 11
    )


def test_a_chunk_symbol_names_the_owner_when_its_class_line_is_not_shown() -> None:
    from repotune.server.completion.context import as_snippets
    from repotune.server.index.retrieval import RetrievedChunk

    method_only = RetrievedChunk(
        path="shop/billing.py", start_line=30, end_line=32,
        text="    def total(self) -> float:\n        return self.net + self.tax\n",
        symbol="Invoice.total", kind="method", language="python", score=0.5, sources=("lexical",),
    )  # fmt: skip
    snippets = as_snippets([RECEIPT, method_only])
    assert snippets[1].symbol == "Invoice.total"  # retrieval's symbol reaches the answer
    assert subject_definition("How is `Invoice.total` computed?", snippets) == NameSite(
        "Invoice.total", "shop/billing.py", 30
    )


def test_an_answer_that_names_a_defined_function_is_grounded_on_it() -> None:
    from repotune.server.ask.grounding import named_definition

    answer = "`area_of_square()` is the function that squares a side."
    assert named_definition(answer, [GEOMETRY]) == NameSite("area_of_square", "geometry.py", 9)
    assert named_definition("It uses `math.pi`.", [GEOMETRY]) is None  # not defined here
    assert (
        named_definition("The indexed code does not define `area_of_square`.", [GEOMETRY]) is None
    )


def test_owner_member_in_a_chunk_of_the_owners_methods_is_the_subject() -> None:
    """The chunk holding `third_step` is named for the method before it and does not show the
    class line: it is still Owner's code (the chunk's symbol says so)."""
    methods = ContextSnippet(
        path="owner.py",
        start_line=40,
        text="    def first(self):\n        return 1\n\n    def third_step(self):\n"
        '        """Step three."""\n        return 3\n',
        symbol="Owner.first",
    )
    site = subject_definition("What does `Owner.third_step` do?", [methods])
    assert site == NameSite("Owner.third_step", "owner.py", 43)


# A window of a config class, cut inside its docstring (so it does not parse on its own).
CONFIG_WINDOW = ContextSnippet(
    path="app/config.py",
    start_line=100,
    text='        retry_limit:\n            How often to retry.\n    """\n\n'
    "    retry_limit: int = field(\n        default=3,\n    )\n    timeout_s: float | None\n",
    symbol="RunConfig",
)


def test_owner_field_is_the_subject_where_it_is_assigned_not_where_the_docstring_names_it() -> None:
    assert subject_definition("What does `RunConfig.retry_limit` control?", [CONFIG_WINDOW]) == (
        NameSite("RunConfig.retry_limit", "app/config.py", 104)
    )
    assert subject_definition("What is `RunConfig.timeout_s` set to?", [CONFIG_WINDOW]) == (
        NameSite("RunConfig.timeout_s", "app/config.py", 107)
    )
    other = ContextSnippet("app/other.py", "    retry_limit: int = 5\n", 7, symbol="OtherConfig")
    assert subject_definition("What does `RunConfig.retry_limit` control?", [other]) != (
        NameSite("RunConfig.retry_limit", "app/other.py", 7)  # another owner's field
    )


def test_field_lines_are_assignments_and_annotations_not_docstring_lines() -> None:
    from repotune.server.index.fields import field_line

    field = field_line("pad_token")
    for line in (
        "    pad_token: str | None = field(",
        "    pad_token: Optional[str]",
        "    pad_token = None",
        "  pad_token?: string;",
        "    pad_token: int  # the id",
    ):
        assert field.search(line), line
    for line in (
        "        pad_token:",
        "        pad_token: Deprecated. Set it.",
        "    pad_token == 3",
    ):
        assert not field.search(line), line


def test_a_field_in_a_window_that_does_not_parse_is_cited_and_quoted() -> None:
    """A class window cut mid-docstring does not parse; the answer opened with the citation
    alone and never showed what the field is set to."""
    site = subject_definition("What is `RunConfig.retry_limit` set to?", [CONFIG_WINDOW])
    assert grounded_opening(site, [CONFIG_WINDOW]) == (
        "`RunConfig.retry_limit` (app/config.py:104)\n"
        "```python\nretry_limit: int = field(\n    default=3,\n)\ntimeout_s: float | None\n```"
    )


def test_an_answer_about_a_name_defined_twice_says_where_else() -> None:
    """trl's `tokenize_fn` is defined in two files: the answer is about retrieval's first, and
    now says where the other one is."""
    copy = ContextSnippet("shapes/legacy.py", "def area_of_square(s):\n    return s**2\n", 30)
    site = subject_definition("What does area_of_square return?", [GEOMETRY, copy])
    assert site == NameSite("area_of_square", "geometry.py", 9)
    note = also_defined(site, [GEOMETRY, copy, GEOMETRY])
    assert note == "`area_of_square` is also defined at shapes/legacy.py:30."
    assert also_defined(site, [GEOMETRY]) == ""  # once: nothing to say
    many = [ContextSnippet(f"m{i}.py", "def area_of_square(s): ...\n", 1) for i in range(5)]
    assert also_defined(site, [GEOMETRY, *many]).endswith("m2.py:1 and 2 more.")
    # `Owner.member` of a class of that name in two files (trl's DataCollatorForPreference)
    collator = "class Collator:\n    def torch_call(self, rows):\n        return rows\n"
    other_collator = ContextSnippet("b/dpo.py", collator, 10)
    unrelated = ContextSnippet("c/kto.py", "class Other:\n    def torch_call(self):\n", 1)
    snippets = [ContextSnippet("a/reward.py", collator, 200), other_collator, unrelated]
    member = subject_definition("What does `Collator.torch_call` do?", snippets)
    assert member == NameSite("Collator.torch_call", "a/reward.py", 201)
    assert also_defined(member, snippets) == "`Collator.torch_call` is also defined at b/dpo.py:11."
    assert also_defined(NameSite("Cart.total", "cart.py", 3), [GEOMETRY, copy]) == ""
