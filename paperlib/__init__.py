"""paperlib: the library behind the notebooks that reproduce
"Leveraging the Graph Structure of Neural Network Training Dynamics" (CIKM 2022).

One module per step of the pipeline:

==================  ===========================================================
``kernels``         the CPU kernels numpy, scipy and torch run, pinned to one class (x86-64-v3)
``paths``           every path the project reads or writes
``profiles``        smoke / default / paper: plain data every notebook reads
``data``            datasets (digits, CIFAR-10, Tiny-ImageNet), on the training device
``device``          device resolution (auto / cpu / cuda), deterministic settings
``models``          the authors' LeNet, AlexNet, VGG, CIFAR ResNets, torchvision ResNets
``store``           the on-disk run store (one directory per trained network)
``train``           populations of networks, snapshots after every epoch
``graph``           rolled and unrolled graphs of a network (S1), a package:
                    ``tracing`` / ``flow`` (channel flow) / ``plan`` / ``rolled`` /
                    ``unrolled`` / ``sizes``
``centrality``      weighted degree and eigenvector centrality (S2)
``temporal``        per-run temporal graphs: centralities of every snapshot, cached
``signatures``      graph signatures and temporal signatures (S3)
``features``        named feature sets, ours and the baselines; the information horizon
``evaluation``      the one evaluator of Q1 and Q2: grouped nested CV, tuned classifiers
``stats``           the corrected resampled t-test (Nadeau & Bengio, 2003)
``experiments``     Q1 / Q2 plans and result files (S4)
``tables``          tables 1 and 2 as tidy frames, from the result files
``published``       the paper's numbers and claims (``results/published/``) beside ours
``render``          labels, the printed tables, Markdown / LaTeX
``readings``        plain-language readings computed from the result files
``figures``         figures, one shared style
``timing``          Q3 runtime measurements
``predictor``       the fitted early-stopping predictor (beyond the paper)
``hooks``           the predictor in your own training: PyTorch, Lightning, Optuna
``pruning``         the simulated hyperparameter search with pruners (07)
``files``           every file that passes between steps: atomic writes, promised columns,
                    one parser per column; ``metrics.json``
``report``          the README's results block
``lock``            the exact environment (``requirements-lock.txt``) and whether it is installed
``verify``          ``make verify``: the committed results retrained, recomputed and compared
``pipeline``        the declared steps and the headless runner: ``python -m paperlib.pipeline``
==================  ===========================================================
"""

__version__ = "0.1.0"

# Before numpy, scipy or torch load (any paperlib module imports them): their CPU kernels are
# chosen from the environment when they load, so the pin must come first (paperlib.kernels).
from . import kernels as _kernels  # noqa: E402

_kernels.pin()
