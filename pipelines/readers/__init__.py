"""Readers of the datasets' on-disk formats, as users have them: one module per format family.

`folders` (ImageFolder, Tiny-ImageNet: lists of JPEG files), `arrays` (CIFAR pickles, MNIST IDX, scikit-learn's
digits), `cluttered` (MNIST-cluttered .npz), `lfw` (LFW-Faces JPEGs, decoded once). Each offers a cheap check of a
root (folder and file names only) and a reader of one split. They import numpy and the standard library (and
PIL/torchvision where a JPEG is decoded), nothing else of ours but each other.
"""
