"""Operator use cases: what people running campaigns do. The CLI (`python -m ops`), the REST
API and the web console call these; none of them holds SQL or a rule of its own."""
