"""The stacks fxstack runs, each a value (`StackDef`, model.py) that one lifecycle
(fxstack.stack.lifecycle) takes. A third stack is one more module here and its entry in
`registry.STACKS` (docs/adding-a-stack.md)."""
