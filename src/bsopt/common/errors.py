"""Bad input, said the project's way (what, where, what to do): the field, the reason, what is
accepted and what was received. The maths and the tasks raise `InputError`; every service
answers it with the one 422 shape of servicekit (servicekit.problems), which all our HTTP
services share. Kept here so bsopt code imports it from its own package."""

from servicekit.problems import InputError, Problem

__all__ = ["InputError", "Problem"]
