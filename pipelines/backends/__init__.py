"""Loader backends: `base.Loader` (the epoch and resume bookkeeping all share), `pytorch` (torchvision
DataLoader), `dali` (one DALI graph for the JPEG datasets, CPU or GPU decoding) and `synthetic` (random
tensors of the dataset's shape). `pipelines.loader.build_loader` picks one; each imports its framework only
when it is chosen.
"""

# Here, not in the loader: checking a sweep's names must not import torch.
BACKENDS: tuple[str, ...] = ("auto", "dali-gpu", "dali-cpu", "pytorch", "synthetic")
