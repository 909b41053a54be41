"""Golden IR of the example models (``$name`` placeholders are the example's source lines)."""

from string import Template

MLP_TRACED = Template("""\
graph @MLPWithBN[N](%x: f32[N,28,28]) -> (f32[N,10]) {
  @fc1.weight: f32[256,784] = param
  @fc1.bias: f32[256] = param
  @bn1.weight: f32[?] = param
  @bn1.bias: f32[?] = param
  @bn1.running_mean: f32[?] = buffer
  @bn1.running_var: f32[?] = buffer
  @bn1.num_batches_tracked: i64[] = buffer
  @fc2.weight: f32[128,?] = param
  @fc2.bias: f32[128] = param
  @bn2.weight: f32[?] = param
  @bn2.bias: f32[?] = param
  @bn2.running_mean: f32[?] = buffer
  @bn2.running_var: f32[?] = buffer
  @bn2.num_batches_tracked: i64[] = buffer
  @fc3.weight: f32[10,?] = param
  @fc3.bias: f32[10] = param
  %flatten: f32[N,784] = flatten[end_dim=-1, start_dim=1](%x)  # mlp.py:$flatten flatten:Flatten
  %fc1: f32[N,256] = linear[bias=true, in_features=784, out_features=256](%flatten, @fc1.weight, @fc1.bias)  # mlp.py:$block1 fc1:Linear
  %bn1: f32[N,256] = batch_norm[affine=true, eps=1e-05, momentum=0.1, num_features=?, track_running_stats=true](%fc1, @bn1.weight, @bn1.bias, @bn1.running_mean, @bn1.running_var, @bn1.num_batches_tracked)  # mlp.py:$block1 bn1:LazyBatchNorm1d
  %relu1: f32[N,256] = relu(%bn1)  # mlp.py:$block1 relu1:ReLU
  %fc2: f32[N,128] = linear[bias=true, in_features=?, out_features=128](%relu1, @fc2.weight, @fc2.bias)  # mlp.py:$block2 fc2:LazyLinear
  %bn2: f32[N,128] = batch_norm[affine=true, eps=1e-05, momentum=0.1, num_features=?, track_running_stats=true](%fc2, @bn2.weight, @bn2.bias, @bn2.running_mean, @bn2.running_var, @bn2.num_batches_tracked)  # mlp.py:$block2 bn2:LazyBatchNorm1d
  %relu2: f32[N,128] = relu(%bn2)  # mlp.py:$block2 relu2:ReLU
  %fc3: f32[N,10] = linear[bias=true, in_features=?, out_features=10](%relu2, @fc3.weight, @fc3.bias)  # mlp.py:$head fc3:LazyLinear
  return (%fc3)
}""")  # noqa: E501

MLP_INFERRED = Template("""\
graph @MLPWithBN[N](%x: f32[N,28,28]) -> (f32[N,10]) {
  @fc1.weight: f32[256,784] = param
  @fc1.bias: f32[256] = param
  @bn1.weight: f32[256] = param
  @bn1.bias: f32[256] = param
  @bn1.running_mean: f32[256] = buffer
  @bn1.running_var: f32[256] = buffer
  @bn1.num_batches_tracked: i64[] = buffer
  @fc2.weight: f32[128,256] = param
  @fc2.bias: f32[128] = param
  @bn2.weight: f32[128] = param
  @bn2.bias: f32[128] = param
  @bn2.running_mean: f32[128] = buffer
  @bn2.running_var: f32[128] = buffer
  @bn2.num_batches_tracked: i64[] = buffer
  @fc3.weight: f32[10,128] = param
  @fc3.bias: f32[10] = param
  %flatten: f32[N,784] = flatten[end_dim=-1, start_dim=1](%x)  # mlp.py:$flatten flatten:Flatten
  %fc1: f32[N,256] = linear[bias=true, in_features=784, out_features=256](%flatten, @fc1.weight, @fc1.bias)  # mlp.py:$block1 fc1:Linear
  %bn1: f32[N,256] = batch_norm[affine=true, eps=1e-05, momentum=0.1, num_features=256, track_running_stats=true](%fc1, @bn1.weight, @bn1.bias, @bn1.running_mean, @bn1.running_var, @bn1.num_batches_tracked)  # mlp.py:$block1 bn1:LazyBatchNorm1d
  %relu1: f32[N,256] = relu(%bn1)  # mlp.py:$block1 relu1:ReLU
  %fc2: f32[N,128] = linear[bias=true, in_features=256, out_features=128](%relu1, @fc2.weight, @fc2.bias)  # mlp.py:$block2 fc2:LazyLinear
  %bn2: f32[N,128] = batch_norm[affine=true, eps=1e-05, momentum=0.1, num_features=128, track_running_stats=true](%fc2, @bn2.weight, @bn2.bias, @bn2.running_mean, @bn2.running_var, @bn2.num_batches_tracked)  # mlp.py:$block2 bn2:LazyBatchNorm1d
  %relu2: f32[N,128] = relu(%bn2)  # mlp.py:$block2 relu2:ReLU
  %fc3: f32[N,10] = linear[bias=true, in_features=128, out_features=10](%relu2, @fc3.weight, @fc3.bias)  # mlp.py:$head fc3:LazyLinear
  return (%fc3)
}""")  # noqa: E501

DYNAMIC_MLP_TRACED = Template("""\
graph @DynamicMLP[N](%x: f32[N,20]) -> (f32[N,10]) {
  @fc0.weight: f32[128,?] = param
  @fc0.bias: f32[128] = param
  @fc1.weight: f32[64,?] = param
  @fc1.bias: f32[64] = param
  @fc2.weight: f32[10,?] = param
  @fc2.bias: f32[10] = param
  %fc0: f32[N,128] = linear[bias=true, in_features=?, out_features=128](%x, @fc0.weight, @fc0.bias)  # mlp.py:$call fc0:LazyLinear
  %relu: f32[N,128] = relu(%fc0)  # mlp.py:$relu
  %fc1: f32[N,64] = linear[bias=true, in_features=?, out_features=64](%relu, @fc1.weight, @fc1.bias)  # mlp.py:$call fc1:LazyLinear
  %relu_1: f32[N,64] = relu(%fc1)  # mlp.py:$relu
  %fc2: f32[N,10] = linear[bias=true, in_features=?, out_features=10](%relu_1, @fc2.weight, @fc2.bias)  # mlp.py:$call fc2:LazyLinear
  return (%fc2)
}""")  # noqa: E501

DYNAMIC_MLP_INFERRED = Template("""\
graph @DynamicMLP[N](%x: f32[N,20]) -> (f32[N,10]) {
  @fc0.weight: f32[128,20] = param
  @fc0.bias: f32[128] = param
  @fc1.weight: f32[64,128] = param
  @fc1.bias: f32[64] = param
  @fc2.weight: f32[10,64] = param
  @fc2.bias: f32[10] = param
  %fc0: f32[N,128] = linear[bias=true, in_features=20, out_features=128](%x, @fc0.weight, @fc0.bias)  # mlp.py:$call fc0:LazyLinear
  %relu: f32[N,128] = relu(%fc0)  # mlp.py:$relu
  %fc1: f32[N,64] = linear[bias=true, in_features=128, out_features=64](%relu, @fc1.weight, @fc1.bias)  # mlp.py:$call fc1:LazyLinear
  %relu_1: f32[N,64] = relu(%fc1)  # mlp.py:$relu
  %fc2: f32[N,10] = linear[bias=true, in_features=64, out_features=10](%relu_1, @fc2.weight, @fc2.bias)  # mlp.py:$call fc2:LazyLinear
  return (%fc2)
}""")  # noqa: E501
