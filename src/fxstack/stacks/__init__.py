"""The stacks fxstack runs, each a value (`StackDef`) that one lifecycle takes."""
