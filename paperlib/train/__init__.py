"""Training (step 01): datasets, models, the run store and populations of trained networks.

Modules
-------
``data``
    datasets (digits, CIFAR-10, Tiny-ImageNet, Fashion-MNIST), on the training device.
``fashion_mnist``
    Fashion-MNIST's idx files: found, checked (SHA-256), subset; the download only when asked.
``device``
    device resolution (auto / cpu / cuda), deterministic settings, the BLAS layers of a run.
``models``
    the authors' LeNet, AlexNet, VGG, CIFAR ResNets, torchvision ResNets; :func:`build_model`, and
    the models of imported runs (the zoos', torchvision's, ``package.module:function``).
``zoo``
    the public zoos' architectures (Model Zoos, Small CNN Zoo) as models of ours.
``store``
    the on-disk run store (one directory per trained network).
``trainer``
    one run: its specification, training with a snapshot after every epoch, resuming, checking.
``populations``
    every run of a profile, in parallel (a process pool or Dask); ``runs.csv``.

Nothing is imported here: ``paperlib.train.data`` is read by modules that must not load the trainer.
"""
