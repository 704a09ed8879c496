"""The app's JSON responses written by orjson; everything else stays Flask's own provider.

A cache hit renders a 2.7 KB page; the standard library's encoder spent about 30 us of CPU on it, orjson 3 us
(docs/serving.md, Benchmark). The output means the same: keys in insertion order (sorted when ``sort_keys``
is set), floats in their shortest round-trip form, compact separators (indented by 2 in debug mode), a
trailing newline. It differs from the standard library's bytes only where the two spell the same value
differently: non-ASCII text is written as UTF-8 instead of ``\\uXXXX`` escapes and an exponent as ``1e-7``
instead of ``1e-07``; and a NaN or infinity becomes ``null`` instead of the bare ``NaN``/``Infinity``
tokens, which are not JSON.

Only :meth:`response` (``jsonify``) changes. ``dumps`` and ``loads`` are the standard library's as before:
request bodies in particular, because orjson rejects ``NaN`` tokens and integers beyond 64 bits, which would
change which bodies get a 400 and with which message.
"""

from __future__ import annotations

from typing import Any, cast

import orjson
from flask.json.provider import DefaultJSONProvider
from flask.wrappers import Response
from werkzeug.sansio.response import Response as BaseResponse

# Types orjson would write its own way go to Flask's ``default`` instead, as with the standard provider
# (dates as HTTP dates, dataclasses through ``dataclasses.asdict``); non-str keys become strings, as in json.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS


class OrjsonProvider(DefaultJSONProvider):
    """:class:`DefaultJSONProvider` whose ``response`` (what ``jsonify`` calls) encodes with orjson.

    Example:
        >>> app.json = OrjsonProvider(app)
        >>> app.json.sort_keys = False
    """

    def response(self, *args: Any, **kwargs: Any) -> BaseResponse:
        """The object (or the arguments as a list or dict) as an ``application/json`` response."""
        obj = self._prepare_response_obj(args, kwargs)
        compact = not ((self.compact is None and self._app.debug) or self.compact is False)
        options = _OPTIONS
        if self.sort_keys:
            options |= orjson.OPT_SORT_KEYS
        if not compact:
            options |= orjson.OPT_INDENT_2
        try:
            body = orjson.dumps(obj, default=self.default, option=options) + b"\n"
        except orjson.JSONEncodeError:
            # What orjson cannot write (integers beyond 64 bits, nesting deeper than 254 levels, an unknown
            # type): the standard provider's answer, or its error.
            return super().response(obj)
        response_class = cast(type[Response], self._app.response_class)  # a Flask app's: takes the body
        return response_class(body, mimetype=self.mimetype)
