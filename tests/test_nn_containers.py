"""Sequential and ModuleList: indexing, slicing, growth, iteration, repr (against torch)."""

from collections import OrderedDict

import numpy as np
import pytest

import lazyfuse as lf
from lazyfuse import nn

torch = pytest.importorskip("torch")
torch.set_num_threads(2)


def three():
    return [nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)]


def test_sequential_indexing_and_len():
    a, r, b = three()
    seq = nn.Sequential(a, r, b)
    assert len(seq) == 3 and seq[0] is a and seq[-1] is b and seq[-3] is a
    assert list(seq) == [a, r, b]
    with pytest.raises(IndexError):
        seq[3]
    with pytest.raises(IndexError):
        seq[-4]


def test_sequential_slices_keep_names_like_torch():
    seq = nn.Sequential(*three())
    tseq = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    for sl in (slice(1, None), slice(None, -1), slice(None, None, 2), slice(5, None)):
        part, tpart = seq[sl], tseq[sl]
        assert type(part) is nn.Sequential and list(part._modules) == list(tpart._modules)
        assert repr(part) == repr(tpart)
    assert seq[1:][1] is seq[2]


def test_sequential_from_ordered_dict_and_append():
    seq = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 3)), ("act", nn.ReLU())]))
    assert list(seq._modules) == ["fc", "act"] and seq.fc is seq[0]
    assert seq.append(nn.Linear(3, 1)) is seq
    assert list(seq._modules) == ["fc", "act", "2"]
    assert list(seq.state_dict()) == ["fc.weight", "fc.bias", "2.weight", "2.bias"]
    seq[1] = nn.Identity()
    assert type(seq.act) is nn.Identity


def test_sequential_forward_matches_torch():
    lf.manual_seed(0)
    seq = nn.Sequential(*three())
    tseq = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    tseq.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in seq.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((5, 2)).astype(np.float32)
    np.testing.assert_allclose(seq(x), tseq(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_empty_sequential_is_identity():
    x = np.ones(3)
    assert nn.Sequential()(x) is x and repr(nn.Sequential()) == "Sequential()"


def test_module_list():
    a, r, b = three()
    ml = nn.ModuleList([a, r])
    assert len(ml) == 2 and ml[0] is a and ml[-1] is r
    assert ml.append(b) is ml and ml[2] is b and list(ml) == [a, r, b]
    ml.extend([nn.ReLU(), nn.ReLU()])
    assert len(ml) == 5 and list(ml._modules) == ["0", "1", "2", "3", "4"]
    sub = ml[1:3]
    assert type(sub) is nn.ModuleList and list(sub) == [r, b] and list(sub._modules) == ["0", "1"]
    ml[0] = nn.Identity()
    assert type(ml[0]) is nn.Identity
    with pytest.raises(IndexError):
        ml[5]
    with pytest.raises(NotImplementedError):
        ml(1)
    assert list(nn.ModuleList().children()) == []


def test_module_list_registers_parameters_and_repr_matches_torch():
    ml = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2), nn.ReLU(), nn.LazyLinear(4)])
    tml = torch.nn.ModuleList(
        [torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.LazyLinear(4)]
    )
    assert repr(ml) == repr(tml)
    assert repr(nn.ModuleList()) == repr(torch.nn.ModuleList())
    assert [n for n, _ in ml.named_parameters()] == [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
        "3.weight",
        "3.bias",
    ]


def test_nested_repr_matches_torch():
    ours = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True)), nn.Identity())
    theirs = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(inplace=True)),
        torch.nn.Identity(),
    )
    assert repr(ours) == repr(theirs)
