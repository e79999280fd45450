"""Datasets for jaxprop: ``jp.data.xor()``, ``jp.data.two_moons(key)``, ...

Real data: ``mnist1d()``, ``digits()`` (scikit-learn's 8×8 digits),
``load_mnist(path)`` / ``load_fashion_mnist(path)`` from files the user has, and
``fashion_mnist()`` from Debian's ``dataset-fashion-mnist`` package; each takes
``channels_last=True`` for inputs with a channel axis, the input of a conv.
``jp.data.split(x, y, n_test)`` holds out part of any dataset.
"""

from ._dataset import Dataset as Dataset
from ._dataset import check_dataset as check_dataset
from ._dataset import split as split
from ._files import fashion_mnist as fashion_mnist
from ._files import load_csv as load_csv
from ._files import load_fashion_mnist as load_fashion_mnist
from ._files import load_mnist as load_mnist
from ._files import load_npz as load_npz
from ._real import digits as digits
from ._real import mnist1d as mnist1d
from ._synthetic import blobs as blobs
from ._synthetic import spirals as spirals
from ._synthetic import two_moons as two_moons
from ._synthetic import xor as xor
