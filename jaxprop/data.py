"""Datasets for jaxprop: ``jp.data.xor()``, ``jp.data.two_moons(key)``, ...

Real data: ``mnist1d()``, ``digits()`` (scikit-learn's 8×8 digits), and
``load_mnist(path)`` / ``load_fashion_mnist(path)`` from files the user has.
``jp.data.split(x, y, n_test)`` holds out part of any dataset.
"""

from ._data import Dataset as Dataset
from ._data import blobs as blobs
from ._data import check_dataset as check_dataset
from ._data import digits as digits
from ._data import load_csv as load_csv
from ._data import load_fashion_mnist as load_fashion_mnist
from ._data import load_mnist as load_mnist
from ._data import load_npz as load_npz
from ._data import mnist1d as mnist1d
from ._data import spirals as spirals
from ._data import split as split
from ._data import two_moons as two_moons
from ._data import xor as xor
