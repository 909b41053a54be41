"""The Module base class: registration, traversal, state_dict, modes, accessors, repr, interceptor."""

import numpy as np
import pytest

import lazyfuse as lf
from lazyfuse import nn
from lazyfuse.errors import ConfigError, InputError, ShapeError
from lazyfuse.frontends.nn.module import CALL_INTERCEPTOR

torch = pytest.importorskip("torch")
torch.set_num_threads(2)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.bn = nn.BatchNorm1d(3)
        self.register_buffer("scale", np.ones(3, np.float32))
        self.register_buffer("tmp", np.zeros(1, np.float32), persistent=False)
        self.alpha = nn.Parameter(np.array([2.0], np.float32))
        self.note = "plain attribute"

    def forward(self, x):
        return self.bn(self.fc(x)) * self.scale * self.alpha


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.layers = nn.Sequential(nn.ReLU(), nn.Linear(3, 2))

    def forward(self, x):
        return self.layers(self.block(x))


class TorchBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)
        self.bn = torch.nn.BatchNorm1d(3)
        self.register_buffer("scale", torch.ones(3))
        self.register_buffer("tmp", torch.zeros(1), persistent=False)
        self.alpha = torch.nn.Parameter(torch.tensor([2.0]))


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.block = TorchBlock()
        self.layers = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(3, 2))


def test_names_match_torch():
    ours, theirs = Net(), TorchNet()
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_children()] == ["block", "layers"]
    assert [type(m).__name__ for m in ours.children()] == ["Block", "Sequential"]
    assert len(list(ours.modules())) == len(list(theirs.modules()))
    assert len(list(ours.parameters())) == 7 and len(list(ours.buffers())) == 5
    assert [n for n, _ in ours.block.named_parameters(recurse=False)] == ["alpha"]
    assert [n for n, _ in ours.named_parameters(prefix="root")][0] == "root.block.alpha"


@pytest.mark.parametrize("call, message", [
    (lambda m: m.register_parameter("a.b", None),
     "parameter name must be a non-empty string without '.', got 'a.b'"),
    (lambda m: m.register_buffer("", None), "buffer name must be a non-empty string without '.', got ''"),
    (lambda m: m.register_parameter("w", [1.0]),
     "cannot assign list as parameter 'w' of .* \\(lazyfuse.nn.Parameter or None expected\\)"),
    (lambda m: m.register_buffer("b", 3),
     "cannot assign int as buffer 'b' of .* \\(np.ndarray or None expected\\)"),
])
def test_register_error_messages_name_the_kind_and_expected_type(call, message):
    m = nn.Module()
    with pytest.raises(ConfigError, match=message):
        call(m)
    assert not m._parameters and not m._buffers


def test_attribute_registration():
    b = Block()
    assert set(b._parameters) == {"alpha"} and set(b._modules) == {"fc", "bn"}
    assert set(b._buffers) == {"scale", "tmp"} and b.note == "plain attribute"
    b.scale = np.full(3, 2.0, np.float32)  # re-assigning a buffer name keeps it a buffer, in place in order
    assert list(b._buffers) == ["scale", "tmp"] and b.scale[0] == 2.0
    b.alpha = None
    assert b.alpha is None and "alpha" not in dict(b.named_parameters())
    with pytest.raises(ConfigError, match="Parameter or None expected"):
        b.alpha = np.zeros(1)
    del b.fc
    assert not hasattr(b, "fc") and "fc.weight" not in b.state_dict()
    b.fc = nn.Linear(1, 1)
    assert "fc" in b._modules


def test_shared_parameters_are_yielded_once():
    a = nn.Linear(2, 2)
    seq = nn.Sequential(a, a)
    assert len(list(seq.parameters())) == 2 and len(list(seq.modules())) == 2


def test_state_dict_shares_memory_and_keep_vars():
    b = Block()
    sd = b.state_dict()
    assert type(sd["fc.weight"]) is np.ndarray and np.shares_memory(sd["fc.weight"], b.fc.weight)
    assert sd["bn.num_batches_tracked"] is b.bn.num_batches_tracked
    assert "tmp" not in sd
    assert b.state_dict(keep_vars=True)["fc.weight"] is b.fc.weight


def test_train_eval_recurse():
    n = Net()
    assert n.training and n.layers[1].training
    assert n.eval() is n
    assert not any(m.training for m in n.modules())
    n.train()
    assert all(m.training for m in n.modules())
    n.train(False)
    assert not n.block.bn.training
    with pytest.raises(ConfigError):
        n.train("yes")


def test_accessors():
    n = Net()
    assert n.get_submodule("layers.1") is n.layers[1] and n.get_submodule("") is n
    assert n.get_parameter("block.fc.weight") is n.block.fc.weight
    assert n.get_parameter("block.alpha") is n.block.alpha
    assert n.get_buffer("block.bn.running_mean") is n.block.bn.running_mean
    with pytest.raises(AttributeError, match="nope"):
        n.get_submodule("block.nope")
    with pytest.raises(AttributeError, match="parameter 'running_mean'"):
        n.get_parameter("block.bn.running_mean")
    with pytest.raises(AttributeError, match="buffer 'weight'"):
        n.get_buffer("block.fc.weight")


def test_apply_visits_children_first():
    seen = []
    n = Net()
    assert n.apply(lambda m: seen.append(type(m).__name__)) is n
    assert seen == ["Linear", "BatchNorm1d", "Block", "ReLU", "Linear", "Sequential", "Net"]


def test_repr_matches_torch():
    ours, theirs = Net(), TorchNet()
    # torch prints custom modules without extra_repr the same way
    assert repr(ours).replace("Net(", "X(").replace("Block(", "X(") == repr(theirs).replace(
        "TorchNet(", "X("
    ).replace("TorchBlock(", "X(")


def test_issue_repr_example():
    model = nn.Sequential(nn.Linear(784, 256), nn.LazyBatchNorm1d(), nn.ReLU(), nn.LazyLinear(10))
    tmodel = torch.nn.Sequential(
        torch.nn.Linear(784, 256), torch.nn.LazyBatchNorm1d(), torch.nn.ReLU(), torch.nn.LazyLinear(10)
    )
    assert repr(model) == repr(tmodel)
    assert repr(model).startswith(
        "Sequential(\n  (0): Linear(in_features=784, out_features=256, bias=True)\n"
        "  (1): LazyBatchNorm1d(0, eps=1e-05"
    )


def test_error_path_through_nested_modules():
    n = Net()
    with pytest.raises(ShapeError, match=r"module 'block.fc' \(Linear\)"):
        n(np.zeros((2, 5), np.float32))
    with pytest.raises(ShapeError, match=r"module 'layers.1' \(Linear\)"):
        n.layers(np.zeros((2, 4), np.float32))


def test_path_survives_slicing_and_is_root_after_deepcopy_of_a_child():
    import copy

    seq = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 3))
    tail = seq[1:]
    with pytest.raises(ShapeError, match=r"module '1' \(Linear\)"):
        seq[1](np.zeros((1, 5), np.float32))
    del tail
    child = copy.deepcopy(seq[1])
    with pytest.raises(ShapeError, match=r"^module Linear: "):
        child(np.zeros((1, 5), np.float32))


def test_call_interceptor():
    calls = []

    def interceptor(module, args, kwargs):
        calls.append((type(module).__name__, args, kwargs))
        return "intercepted"

    m = nn.Linear(2, 2)
    token = CALL_INTERCEPTOR.set(interceptor)
    try:
        assert m("x", k=1) == "intercepted"
    finally:
        CALL_INTERCEPTOR.reset(token)
    assert calls == [("Linear", ("x",), {"k": 1})]
    assert m(np.ones((1, 2), np.float32)).shape == (1, 2)


def test_missing_super_init_is_reported():
    class Bad(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match="Module.__init__"):
        Bad()


def test_forward_not_implemented():
    with pytest.raises(NotImplementedError):
        nn.Module()(1)


def test_wrong_forward_arguments_name_the_module_and_change_nothing():
    class CallsChildWrongly(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm1d(3)
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(self.bn(x), x)  # BN ran (and updated its stats) before the mistake

    class RaisesTypeErrorInside(nn.Module):
        def forward(self, x):
            return len(x.shape[0])

    x = np.ones((4, 3), np.float32)
    model = CallsChildWrongly()
    cases = [
        (lambda: model(x, x), r"^module CallsChildWrongly: forward: .*takes 2 positional arguments but 3"),
        (lambda: model.fc(x, bias=1), r"^module 'fc' \(Linear\): forward: .*unexpected keyword arg"),
        (lambda: model(x), r"^module 'fc' \(Linear\): forward: .*takes 2 positional arguments but 3"),
    ]
    for call, pattern in cases:
        with pytest.raises(InputError, match=pattern) as info:
            call()
        assert isinstance(info.value, TypeError)
        assert int(model.bn.num_batches_tracked) == 0 and not model.bn.running_mean.any()
    with pytest.raises(TypeError) as info:  # a TypeError inside forward is the user's own, left as is
        RaisesTypeErrorInside()(x)
    assert type(info.value) is TypeError


def test_register_rejects_bad_names_and_values():
    m = nn.Module()
    with pytest.raises(ConfigError):
        m.register_buffer("a.b", np.zeros(1))
    with pytest.raises(ConfigError):
        m.register_buffer("a", [1, 2])
    with pytest.raises(ConfigError):
        m.register_module("x", object())


def test_member_stores_count_every_change():
    m = nn.Linear(2, 3)
    root = nn.Sequential(nn.Sequential(m))
    p = nn.Parameter(np.zeros(3, np.float32))
    changes = [
        lambda: m._parameters.__setitem__("bias", p),
        lambda: m._parameters.pop("bias"),
        lambda: m._parameters.setdefault("bias", p),
        lambda: m._parameters.update(bias=p),
        lambda: m._parameters.__ior__({"bias": p}),
        lambda: m._parameters.__delitem__("bias"),
        lambda: m._buffers.update(extra=np.zeros(1)),
        lambda: m._buffers.popitem(),
        lambda: m._modules.clear(),
        lambda: setattr(m, "training", False),
        lambda: m.train(),
        lambda: setattr(m, "note", 1),
        lambda: delattr(m, "note"),
        lambda: m.register_buffer("extra", np.zeros(1)),
    ]
    for change in changes:
        before, root_before = m.state_version, root.state_version
        change()
        assert m.state_version > before and root.state_version > root_before  # up to the root


def test_state_version_counts_class_setstate_and_undone_calls():
    m = nn.Sequential(nn.LazyLinear(3))
    before = m.state_version
    m[0].materialize(in_features=2)  # assigns __class__ and the arrays
    assert m.state_version > before
    before = m.state_version
    m[0].__setstate__(m[0].__getstate__())
    assert m.state_version > before

    lazy = nn.Sequential(nn.LazyLinear(3), nn.Linear(4, 2))
    before = lazy.state_version
    with pytest.raises(ShapeError):
        lazy(np.zeros((2, 5), np.float32))  # materializes layer 0, then layer 1 fails: undone
    assert type(lazy[0]) is nn.LazyLinear and lazy.state_version > before


def test_writes_into_arrays_do_not_count_but_load_state_dict_does():
    m = nn.Sequential(nn.Linear(2, 3))
    before = m.state_version
    m[0].weight[...] = 1.0
    assert m.state_version == before
    weight = m[0].weight
    m.load_state_dict(m.state_dict())  # copies in place, and says so: a backend's device copies go stale
    assert m[0].weight is weight and m.state_version > before


def test_state_versions_are_per_model():
    a, b = nn.Sequential(nn.Linear(2, 3)), nn.Sequential(nn.Linear(2, 3))
    before = b.state_version
    a[0].weight = nn.Parameter(np.zeros((3, 2), np.float32))
    a.eval()
    a[0].extra = 1
    assert b.state_version == before


def test_a_shared_submodule_change_reaches_every_holder():
    shared = nn.Linear(2, 2)
    a, b = nn.Sequential(shared), nn.Sequential(nn.Sequential(shared))
    other = nn.Sequential(nn.Linear(2, 2))
    versions = a.state_version, b.state_version, other.state_version
    shared.bias = None
    assert a.state_version > versions[0] and b.state_version > versions[1]
    assert other.state_version == versions[2]
    # after a module is taken out, its changes no longer reach the old holder
    a[0] = nn.Identity()
    before = a.state_version
    shared.eps = 1.0
    assert a.state_version == before and b.state_version > versions[1]


def test_temporary_holders_leave_no_owner_entries_behind():
    # Every change walks a module's owners: slices in a forward must not pile up there.
    import gc

    seq = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    keep = [seq[1:] for _ in range(50)]  # alive: each slice holds the children
    assert len(seq[2].__dict__["_owners"]) >= 50
    del keep
    gc.collect()
    assert len(seq[2].__dict__["_owners"]) == 1  # only seq itself


def test_state_versions_survive_cycles_and_copies():
    import copy
    import pickle

    a, b = nn.Sequential(), nn.Sequential()
    a.add_module("b", b)
    b.add_module("a", a)  # a cycle: a bump must still end
    before = a.state_version
    b.training = False
    assert a.state_version > before

    shared = nn.Linear(2, 2)
    model = nn.Sequential(nn.Sequential(shared), nn.Sequential(shared))
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert twin[0][0] is twin[1][0]
        versions = twin[0].state_version, twin[1].state_version, twin.state_version, model.state_version
        twin[0][0].bias = None
        assert twin[0].state_version > versions[0] and twin[1].state_version > versions[1]
        assert twin.state_version > versions[2] and model.state_version == versions[3]
    flat = copy.copy(model)  # a shallow copy holds the same submodules, in stores of its own
    before = model.state_version, flat.state_version
    flat.extra = nn.ReLU()
    assert "extra" not in model._modules and model.state_version == before[0]
    shared.bias = None
    assert model.state_version > before[0] and flat.state_version > before[1]


def test_local_state_and_settings():
    bn = nn.BatchNorm1d(3, affine=False)
    local = bn.local_state()
    assert list(local) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert local["weight"] is None and local["running_mean"] is bn.running_mean
    assert "running_var" in local and "eps" not in local and local.get("nope") is None
    with pytest.raises(TypeError):
        local["weight"] = None  # read-only
    bn.register_buffer("extra", np.zeros(1))
    assert "extra" in local  # a view: it follows the module
    assert bn.settings() == {"training": True, "num_features": 3, "eps": 1e-5, "momentum": 0.1,
                             "affine": False, "track_running_stats": True}
    lazy = nn.LazyLinear(4)
    assert nn.is_uninitialized(lazy.local_state()["weight"])
    assert set(nn.Sequential(lazy).settings()) == {"training"}


def test_copies_and_old_pickles_keep_counting_stores():
    import copy
    import pickle

    from lazyfuse.frontends.nn.module import _MemberDict

    m = nn.Sequential(nn.Linear(2, 3))
    for twin in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        for mod in twin.modules():
            assert all(type(getattr(mod, s)) is _MemberDict for s in ("_parameters", "_buffers", "_modules"))
    state = m[0].__getstate__()
    # plain dicts, as pickled before the stores counted their changes
    state.update(_parameters=dict(state["_parameters"]), _buffers={}, _modules={})
    old = nn.Linear.__new__(nn.Linear)
    old.__setstate__(state)
    assert type(old._parameters) is _MemberDict and set(old._parameters) == {"weight", "bias"}


# ------------------------------------------------------------------------------------------ failed calls
def everything(model):
    """All a failed call must leave as it was: arrays (copied), store orders, attributes, classes,
    and the random generator (object and state)."""
    from lazyfuse.frontends.nn import init

    mods = []
    for name, m in model.named_modules():
        arrays = {
            f"{s}.{k}": repr(v) if v is None or nn.is_uninitialized(v) else (v.dtype.str, v.tolist())
            for s in ("_parameters", "_buffers")
            for k, v in getattr(m, s).items()
        }
        attrs = {k: v for k, v in vars(m).items() if not k.startswith("_")}
        order = [list(getattr(m, s)) for s in ("_parameters", "_buffers", "_modules")]
        mods.append((name, type(m), arrays, repr(attrs), order, sorted(m._non_persistent_buffers)))
    gen = init.get_generator()
    return mods, gen, repr(gen.bit_generator.state)


def x32(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_failure_late_in_a_sequence_restores_running_stats():
    lf.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 5), nn.BatchNorm1d(5), nn.Linear(6, 3))
    before = everything(model)
    with pytest.raises(ShapeError) as info:
        model(x32(4, 10))
    msg = str(info.value)
    assert "module '2' (Linear): linear" in msg and "last dimension 6" in msg and "(4, 5)" in msg
    assert everything(model) == before
    assert int(model[1].num_batches_tracked) == 0


def test_failure_after_lazy_layers_keeps_them_lazy_and_the_generator_untouched():
    lf.manual_seed(0)
    model = nn.Sequential(nn.LazyLinear(5), nn.LazyBatchNorm1d(), nn.Linear(6, 3))
    before = everything(model)
    with pytest.raises(ShapeError, match=r"module '2' \(Linear\)"):
        model(x32(4, 10))
    assert everything(model) == before
    assert [type(m) for m in model] == [nn.LazyLinear, nn.LazyBatchNorm1d, nn.Linear]
    assert model.has_uninitialized_params() and model[0].in_features == 0 and model[1].num_features == 0
    # a later good call resolves exactly like a first call on a fresh model would
    model[2] = nn.Identity()
    lf.manual_seed(0)
    fresh = nn.Sequential(nn.LazyLinear(5), nn.LazyBatchNorm1d(), nn.Identity())
    lf.manual_seed(1)
    model(x32(4, 10))
    lf.manual_seed(1)
    fresh(x32(4, 10))
    for (k, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=k)


class Scribbler(nn.Module):
    """Writes every kind of state lazyfuse tracks, then fails."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.register_buffer("count", np.zeros((), np.int64))
        self.register_buffer("scratch", np.zeros(2, np.float32), persistent=False)
        self.note = "before"

    def forward(self, x):
        self.note = "after"
        self.extra = 1
        del self.scratch
        self.register_buffer("scratch", np.ones(2, np.float32))  # now persistent
        self.register_buffer("new", np.ones(1, np.float32))
        self.fc = nn.Linear(2, 2)  # draws from the generator
        nn.init.uniform_(self.fc.weight, 0, 1)
        self.train(not self.training)
        lf.manual_seed(123)
        raise ValueError("user bug")


def test_failed_call_undoes_attribute_store_buffer_and_generator_writes():
    lf.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm1d(2), Scribbler())
    before = everything(model)
    gen = nn.init.get_generator()
    with pytest.raises(ValueError, match="user bug"):
        model(x32(3, 2))
    assert everything(model) == before
    assert nn.init.get_generator() is gen
    assert list(model[1].state_dict()) == ["count", "fc.weight", "fc.bias"]
    assert "extra" not in vars(model[1]) and model[1].note == "before"


def test_nested_calls_do_not_undo_on_their_own():
    class Tolerant(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn, self.fc = nn.BatchNorm1d(3), nn.Linear(5, 2)

        def forward(self, x):
            x = self.bn(x)
            try:
                return self.fc(x)
            except ShapeError:
                return x

    model = Tolerant()
    model(x32(4, 3))
    assert int(model.bn.num_batches_tracked) == 1  # the caught inner failure undid nothing


def test_only_eager_calls_open_an_undo_journal():
    from lazyfuse.frontends.nn import _undo

    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(_undo.active())
            return x

    model = nn.Sequential(Probe())
    model(x32(2, 2))
    lf.trace(model, ("N", 2))
    assert seen == [True, False] and not _undo.active()


def test_an_undo_leaves_other_threads_writes_alone():
    import threading

    shared = nn.Linear(2, 2)
    waiting, go = threading.Event(), threading.Event()

    class Failer(nn.Module):
        def forward(self, x):
            shared.a = "from the failing thread"
            waiting.set()
            go.wait(10)
            raise ValueError("fails")

    class Writer(nn.Module):
        def forward(self, x):
            shared.b = "from the main thread"
            shared.register_buffer("extra", np.ones(1))
            return x

    errors = []

    def run():
        try:
            Failer()(1)
        except ValueError as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    assert waiting.wait(10)
    Writer()(1)  # its own journal: not nested in the other thread's call
    go.set()
    t.join(10)
    assert len(errors) == 1 and not hasattr(shared, "a")
    assert shared.b == "from the main thread" and list(shared._buffers) == ["extra"]


# ------------------------------------------------------------------------------------------ dtypes
@pytest.mark.parametrize("make", [
    lambda dt: nn.Linear(3, 2, dtype=dt),
    lambda dt: nn.LazyLinear(2, dtype=dt),
    lambda dt: nn.BatchNorm1d(3, dtype=dt),
    lambda dt: nn.LazyBatchNorm1d(dtype=dt),
])
def test_constructor_dtypes(make):
    assert make(None).weight.dtype == np.float32  # like torch: None is the default dtype
    assert make("float64").weight.dtype == np.float64
    for bad in ("foo", "float16x", "int", np.float16, ">f4", 3):
        with pytest.raises(ConfigError, match=r"^\w+: dtype must be float32 or float64, got") as info:
            make(bad)
        assert repr(bad) in str(info.value)


def test_to_rejects_unknown_dtypes_and_none_changes_nothing():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    before = everything(model)
    for bad in ("foo", "float16", np.int8):  # ("cpu" is a device: tests/test_compiled_module.py)
        with pytest.raises(ConfigError, match=r"^module Sequential: to: dtype must be float32 or float64"):
            model.to(bad)
        assert everything(model) == before
    assert model.to(None) is model and model.to() is model
    assert everything(model) == before
