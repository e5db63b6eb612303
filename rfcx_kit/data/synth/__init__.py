"""An RFCX-shaped synthetic data set with hidden ground truth (``rfcx-kit synth``).

Nobody knows which calls in the real training audio are unlabelled; here every planted call is known.
The modules, in the order the data is made:

* ``calls.py``: the 24 species' call shapes (in their real bands and box lengths) and their confusers;
* ``background.py``: rainforest-like background (coloured noise, insects, rain, distant other species);
* ``scene.py``: the plan: presence by test prevalence, calls, SNRs, and the few TP/FP labels;
* ``writer.py``: renders and writes recordings one by one (FLAC at 48 kHz or 128 x 3751 log-mel npy),
  the competition CSVs and ``truth/``;
* ``preview.py``: a PNG of one recording with its planted boxes;
* ``baseline.py``: a non-deep yardstick (band statistics + logistic regression) scored against truth;
* ``cli.py``: the ``rfcx-kit synth`` command.

``write_dataset(SynthConfig(...), out, fmt)`` is the whole thing in one call.
"""

from rfcx_kit.data.synth.scene import Plan, SynthConfig, plan_dataset
from rfcx_kit.data.synth.writer import write_dataset

__all__ = ["Plan", "SynthConfig", "plan_dataset", "write_dataset"]
