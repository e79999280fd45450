"""The ``jaxprop`` command line, the edge of the package: it parses options,
sets JAX's global configuration and launches processes; the library never does.

- :mod:`.command`: the parser, its four commands and ``main``;
- :mod:`.train`: ``jaxprop train``; :mod:`.xor`: ``jaxprop xor``;
- :mod:`.options`: the settings options shared by train and check;
- :mod:`.processes`: devices, joining other processes, signals, stdout;
- :mod:`.errors`: a user's mistake as one line and exit status 2.
"""

from .command import console as console
from .command import main as main
from .command import make_parser as make_parser
from .errors import UsageError as UsageError
