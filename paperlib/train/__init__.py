"""Training (step 01): datasets, models, the run store and populations of trained networks.

Modules
-------
``data``
    datasets (digits, CIFAR-10, Tiny-ImageNet), on the training device.
``device``
    device resolution (auto / cpu / cuda), deterministic settings.
``models``
    the authors' LeNet, AlexNet, VGG, CIFAR ResNets, torchvision ResNets.
``store``
    the on-disk run store (one directory per trained network).
``trainer``
    populations of networks, snapshots after every epoch.

Nothing is imported here: ``paperlib.train.data`` is read by modules that must not load the trainer.
"""
