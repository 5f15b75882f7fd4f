"""paperlib: the library behind the notebooks that reproduce
"Leveraging the Graph Structure of Neural Network Training Dynamics" (CIKM 2022).

One module per step of the pipeline:

==================  ===========================================================
``paths``           every path the project reads or writes
``profiles``        smoke / default / paper: plain data every notebook reads
``data``            datasets (digits, CIFAR-10, Tiny-ImageNet)
``models``          LeNet, AlexNet, VGG, CIFAR ResNets, torchvision ResNets
``store``           the on-disk run store (one directory per trained network)
``train``           populations of networks, snapshots after every epoch
``graph``           rolled and unrolled graphs of a network (S1)
``centrality``      weighted degree and eigenvector centrality (S2)
``temporal``        per-run temporal graphs: centralities of every snapshot, cached
``signatures``      graph signatures and temporal signatures (S3)
``features``        named feature sets, ours and the baselines
``experiments``     Q1 / Q2 classification experiments (S4)
``figures``         figures, one shared style
``tables``          tables 1 and 2, paper numbers beside ours
``timing``          Q3 runtime measurements
``pipeline``        the headless runner: ``python -m paperlib.pipeline``
==================  ===========================================================
"""

__version__ = "0.1.0"
