"""``Text``: the string type of every request field, query and path parameter.

PostgreSQL's ``text`` cannot hold NUL (``invalid byte sequence … 0x00``),
and a NUL in a key or a name is never what a client meant, so it is refused
as a validation error (422) before any work, on every backend alike. Lone
surrogates, the other code points UTF-8 cannot carry, pydantic's ``str``
refuses already. The JSON schema says so with a ``pattern``, so generated
clients and fuzzers know the rule (docs/api.md, "Text").
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

NO_NUL_PATTERN = "^[^\\u0000]*$"


def _refuse_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


class _NoNul:
    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_after_validator_function(_refuse_nul, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        described = handler(schema)
        described["pattern"] = NO_NUL_PATTERN
        return described


Text = Annotated[str, _NoNul()]
