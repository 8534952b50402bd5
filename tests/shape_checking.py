"""The run-time checker behind the suite's shape checks (pyproject's ``--jaxtyping-packages``).

beartype with PEP 484's numeric tower: an ``int`` is accepted where ``float`` is annotated, as static type
checkers and the annotations' readers take it.
"""

from beartype import BeartypeConf, beartype

check = beartype(conf=BeartypeConf(is_pep484_tower=True))
