"""l0repro: hard-concrete L0 layers for your own models, and the reproduction of Louizos,
Welling, Kingma 2018 built on them.

    from l0repro import L0Linear, L0Conv2d, L0Regularizer, compact

The method lives in ``l0repro.l0`` and needs only torch; its public names are these. The suite
(``l0repro.train``, ``l0repro.report``, ...) needs ``pip install "l0repro[suite]"``.
"""

from l0repro.l0 import *  # noqa: F403  (the method's public names, listed in l0repro.l0.__all__)
from l0repro.l0 import __all__  # noqa: F401
