"""lavie-ref: the project's own PyTorch definitions of the LaVie networks (official state-dict keys).

Used as the test oracle for the TypeScript/ONNX networks (golden vectors committed under test/golden),
and as the trainer of the toy world. CI never imports it: it consumes the committed files only.
"""
