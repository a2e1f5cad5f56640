"""Hearth's own check of grammars and JSON schemas (no model): what crashed or exhausted
llama.cpp in the 2026-12-07 review (S1) is refused with a reason, and the grammars people
and llama-cpp-python's schema converter write pass."""

from __future__ import annotations

import json
import re

import pytest
from llama_cpp import llama_grammar
from llama_cpp.llama_grammar import json_schema_to_gbnf

from app.inference.grammar_limits import (
    MAX_NESTING,
    MAX_REPEAT,
    StructureError,
    check_grammar,
    check_schema,
    check_structure,
)

PERSON = {"type": "object",
          "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}


@pytest.mark.parametrize(("grammar", "why"), [
    ('root ::= "\\x00"', "U+0000 can never be generated"),          # SIGABRT, first sample
    ("root ::= [^\\x00-\\U0010FFFF]", "matches no character"),       # SIGABRT
    ("root ::= [^\\x01-\\U0010FFFF]", "matches no character"),       # only NUL left
    ('root ::= "\\uD800"', "can never be generated"),                # a surrogate
    ("root ::= " + "(" * 100_000 + '"a"' + ")" * 100_000, "nested more than"),  # SIGSEGV
    ('root ::= "a"{5,2}', "the most is less than the least"),
    ('root ::= "' + "a" * 20_000 + '"{999}', "expands to more than"),  # ~850 MiB
    ('root ::= "ab"{1000}{1000}', "expands to more than"),
    ('root ::= "a"{2000}', "at most 1,000"),
    ('root ::= "a"{99999999999999999999}', "at most 1,000"),
    ("root ::= <[99999]>", "token references"),
    ('root ::= "a" x', "'x' is used but never defined"),
    ('item ::= "a"', "needs a 'root ::= ...' rule"),
    ('root ::= "\\q"', "unknown escape"),
    ('root ::= ("a"', "expecting ')'"),
    ('root ::= "a\x00"', "NUL character"),
])
def test_grammars_that_crash_or_exhaust_llama_cpp_are_refused(grammar: str, why: str
                                                              ) -> None:
    with pytest.raises(StructureError, match=re.escape(why)):
        check_grammar(grammar)


@pytest.mark.parametrize(("schema", "why"), [
    ({"type": "string", "maxLength": 30_000}, "maxLength 30000 at /"),  # SIGSEGV in the parser
    ({"type": "array", "items": {"type": "integer"}, "minItems": 1_000_000_000},
     "minItems 1000000000"),                                                 # ~100 GB
    ({"type": "object", "properties": {"a": {"type": "array", "maxItems": 20_000}}},
     "at /properties/a"),
    ({"type": "string", "pattern": "^a{100000}$"}, "repeats {100000} times"),
    ({"type": "string", "minLength": -1}, "outside 0 to"),
    ({"type": "object", "properties": {f"p{i}": {"type": "string", "maxLength": 1000}
                                       for i in range(25)}}, "add up to more than"),
    ({"type": "object", "properties": {f"p{i}": {} for i in range(300)}}, "300 properties"),
])
def test_schemas_that_expand_without_bound_are_refused(schema: dict, why: str) -> None:
    with pytest.raises(StructureError, match=re.escape(why)):
        check_schema(json.dumps(schema))


def test_deep_or_malformed_schema_documents_are_refused() -> None:
    deep: dict = {"type": "string"}
    for _ in range(200):
        deep = {"type": "array", "items": deep}
    for text, why in ((json.dumps(deep), "too deep"), ("[1]", "must be a JSON object"),
                      ("{not json", "not valid JSON"), ("[" * 50_000, "not valid JSON"),
                      ("{}" + " " * 70_000, "characters")):
        with pytest.raises(StructureError, match=why):
            check_schema(text)


@pytest.mark.parametrize("schema", [
    PERSON, {"type": "object"}, {}, {"type": "string", "maxLength": MAX_REPEAT},
    {"type": "string", "minLength": MAX_REPEAT},
    {"type": "array", "items": {"type": "integer"}, "minItems": 3, "maxItems": MAX_REPEAT},
    {"type": "string", "pattern": "^[a-z]{2,10}-[0-9]{3}$"},
    {"type": "string", "format": "date-time"}, {"enum": ["a", "b", 3]},
    {"oneOf": [{"type": "number"}, {"type": "boolean"}, {"type": "null"}]},
    {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(40)}},
])
def test_ordinary_schemas_and_their_grammars_pass(schema: dict) -> None:
    text = json.dumps(schema)
    assert check_schema(text) == schema
    size = check_grammar(json_schema_to_gbnf(text))
    assert size.rules >= 1 and size.nesting <= MAX_NESTING


def test_llama_cpp_pythons_example_grammars_pass() -> None:
    examples = {name: value for name, value in vars(llama_grammar).items()
                if name.endswith("_GBNF") and isinstance(value, str)}
    assert len(examples) >= 5
    for name, grammar in examples.items():
        assert check_grammar(grammar).rules >= 1, name


@pytest.mark.parametrize("grammar", [
    'root ::= "yes" | "no"', 'root::="a"', '# comment\nroot ::= ("a"\n | "b") # end\n',
    "root ::= [a-z\\]-]+ [^\\x00-\\x1F]? .", 'root ::= "a"{2} "b"{1,} "c"{0,3} "d"?',
    'root ::= x-y\nx-y ::= "1" | ""\r\n', "root ::= [] [^]", 'root ::= "\\u00e9" "é"',
    "root ::= " + "(" * 1000 + '"a"' + ")" * 1000,
])
def test_valid_gbnf_forms_pass(grammar: str) -> None:
    check_grammar(grammar)


def test_check_structure_checks_whichever_is_given() -> None:
    check_structure("", "")
    check_structure('root ::= "a"', "")
    check_structure("", json.dumps(PERSON))
    with pytest.raises(StructureError):
        check_structure('root ::= "\\x00"', "")
    with pytest.raises(StructureError):
        check_structure("", '{"type": "string", "maxLength": 30000}')
