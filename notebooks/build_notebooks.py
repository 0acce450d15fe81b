"""Write the teaching notebooks (outputs stripped) from the cells below: ``python notebooks/build_notebooks.py``.

Keeping the notebooks as Python source makes them easy to review and diff; the tests execute the .ipynb files.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent
SETUP = """import numpy as np
import matplotlib.pyplot as plt
import numcnn
from numcnn.datasets import load_dataset
from numcnn.preprocessing import images_to_input
np.set_printoptions(precision=4, suppress=True)
(x_train_u8, y_train), (x_test_u8, y_test) = load_dataset("mnist-5k")   # 5,000 real MNIST digits, embedded
x_train, x_test = images_to_input(x_train_u8), images_to_input(x_test_u8)"""

NOTEBOOKS = {}

NOTEBOOKS["01_convolution"] = [
    ("md", """# 1. Convolution, exactly

The source document writes a convolutional layer as

$$y_{ij} = f\\Big(\\sum_k x_{ik}\\, w_{kj} + b_j\\Big)$$

That is really a *matrix product*: row $i$ of $x$ is one receptive field (all pixels and channels under the filter
at output position $i$), column $j$ of $w$ is one filter. With every index written out (NHWC, Keras's layout,
kernel $w[p, q, k, j]$ of shape $(K_H, K_W, C_{in}, C_{out})$):

$$y[n, r, c, j] = b_j + \\sum_{p=0}^{K_H-1} \\sum_{q=0}^{K_W-1} \\sum_{k=0}^{C_{in}-1} x_{pad}[n,\\; r s_h + p,\\; c s_w + q,\\; k]\\; w[p, q, k, j]$$

(then the activation $f$). Output size: `valid` $\\lfloor (H - K_H)/s_h \\rfloor + 1$; `same` $\\lceil H/s_h \\rceil$ with
total padding $\\max((\\text{out}-1)s_h + K_H - H, 0)$, split with the **odd pixel at the bottom/right** (TensorFlow's rule)."""),
    ("code", SETUP),
    ("md", "## A 4x4 example by hand\nA 3x3 filter on a 4x4 image, stride 1, `valid`: 2x2 outputs. Each is the sum of 9 products."),
    ("code", """x = np.array([[1, 2, 0, 1],
              [0, 1, 3, 1],
              [2, 1, 0, 0],
              [1, 0, 2, 1]], dtype=float)
w = np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], dtype=float)   # a vertical-edge filter
by_hand = np.zeros((2, 2))
for r in range(2):
    for c in range(2):
        window = x[r:r + 3, c:c + 3]
        by_hand[r, c] = np.sum(window * w)
        print(f"y[{r},{c}] = sum({window.tolist()} * w) = {by_hand[r, c]}")
from numcnn.kernels import reference
y, _ = reference.conv2d_forward(x.reshape(1, 4, 4, 1), w.reshape(3, 3, 1, 1), np.zeros(1))
print("formula-literal reference:", y[0, :, :, 0].tolist())"""),
    ("md", "The filter computes *left column minus right column* of each window: positive where the image gets darker to the right."),
    ("md", "## TensorFlow's asymmetric `same` padding\nWith stride 2 a 4x4 input needs one extra row and column in total: TensorFlow puts it at the **bottom/right**."),
    ("code", """from numcnn.kernels.geometry import output_size_and_padding
for size, kernel, stride in [(4, 3, 2), (5, 3, 2), (28, 3, 1), (7, 4, 3)]:
    out, before, after = output_size_and_padding(size, kernel, stride, "same")
    print(f"input {size}, kernel {kernel}, stride {stride}: output {out}, padding top/left {before}, bottom/right {after}")"""),
    ("md", "## The literal loop and the fast kernel agree\nThe fast kernel unrolls every receptive field into a row (*im2col*, Numba) and does one BLAS matrix product: the document's formula, literally a matrix product."),
    ("code", """import time
from numcnn import kernels
rng = np.random.default_rng(0)
batch = x_train[:8]
w = rng.normal(scale=0.3, size=(3, 3, 1, 8)).astype(np.float32)
b = np.zeros(8, np.float32)
t = time.perf_counter(); y_ref, _ = reference.conv2d_forward(batch, w, b); t_ref = time.perf_counter() - t
kernels.conv2d_forward(batch, w, b)  # first call compiles
t = time.perf_counter(); y_fast, _ = kernels.conv2d_forward(batch, w, b); t_fast = time.perf_counter() - t
print(f"max |fast - reference| = {np.abs(y_fast - y_ref).max():.2e}; reference {t_ref*1e3:.0f} ms, fast {t_fast*1e3:.2f} ms "
      f"({t_ref / t_fast:.0f}x faster)")"""),
    ("md", "## A filter sliding over a real digit, and its feature maps"),
    ("code", """digit = x_train[0, :, :, 0]
fig, axes = plt.subplots(1, 4, figsize=(10, 2.8))
for axis, (r, c) in zip(axes, [(0, 0), (8, 6), (14, 14), (25, 25)]):
    axis.imshow(digit, cmap="gray")
    axis.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 3, 3, fill=False, color="red", lw=2))
    axis.set_title(f"window at row {r}, col {c}"); axis.axis("off")
plt.show()
edges = np.stack([np.array([[1, 0, -1]] * 3), np.array([[1, 0, -1]] * 3).T, np.ones((3, 3)) / 9,
                  np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]])], axis=-1)[:, :, None, :].astype(np.float32)
maps, _ = kernels.conv2d_forward(x_train[:1], edges, np.zeros(4, np.float32), padding="same")
fig, axes = plt.subplots(1, 4, figsize=(10, 2.8))
for k, name in enumerate(["vertical edges", "horizontal edges", "blur", "Laplacian"]):
    axes[k].imshow(maps[0, :, :, k], cmap="RdBu_r"); axes[k].set_title(name); axes[k].axis("off")
plt.show()"""),
    ("md", """## Fewer multiplications: Winograd's F(2x2, 3x3)

A 3x3 filter at stride 1 costs 9 multiplications per output and channel pair. Winograd's minimal filtering
algorithm (Lavin & Gray 2016) gets **2 outputs of a 3-tap filter from 4 inputs with 4 multiplications** instead of 6.
In 1-D, with inputs $d_0..d_3$ and filter $g_0..g_2$:

$$m_1 = (d_0 - d_2)\\,g_0, \\quad m_2 = (d_1 + d_2)\\,\\tfrac{g_0 + g_1 + g_2}{2}, \\quad m_3 = (d_2 - d_1)\\,\\tfrac{g_0 - g_1 + g_2}{2}, \\quad m_4 = (d_1 - d_3)\\,g_2$$
$$y_0 = m_1 + m_2 + m_3, \\qquad y_1 = m_2 - m_3 - m_4$$

The filter's combinations are computed once per filter, the input's are additions only. As matrices,
$y = A^T[(G g) \\odot (B^T d)]$, and nesting the 1-D algorithm in both directions gives the 2-D one for a 4x4 input
tile $d$ and 2x2 outputs: $Y = A^T\\,[(G g G^T) \\odot (B^T d B)]\\,A$ — **16 multiplications instead of 36** (2.25x fewer)."""),
    ("code", """from numcnn.kernels import winograd
BT, G, AT = reference.WINOGRAD_BT, reference.WINOGRAD_G, reference.WINOGRAD_AT
print("B^T =\\n", BT, "\\nG =\\n", G, "\\nA^T =\\n", AT)
d = x                                   # the 4x4 image of the hand example above: exactly one tile
g = np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], dtype=float)
U, V = G @ g @ G.T, BT @ d @ BT.T       # transformed filter and tile (4x4 each)
Y = AT @ (U * V) @ AT.T                 # 16 products, then additions only
print("Winograd:", Y.tolist(), " by hand:", by_hand.tolist())"""),
    ("md", """### Larger tiles: F(4x4, 3x3), the one numcnn runs

The same construction with more interpolation points ($0, \\pm 1, \\pm 2, \\infty$) gets **4 outputs of a 3-tap filter
from 6 inputs with 6 multiplications** (instead of 12), and in 2-D a 4x4 output tile from a 6x6 input tile with
**36 multiplications instead of 144: 4x fewer**. Its transformed tiles are $36/16 = 2.25$ times the input's size,
against $16/4 = 4$ times for F(2x2, 3x3), so it also makes *less* memory traffic — on the CPUs numcnn was measured on
it took 0.4-0.9x im2col's time where F(2x2) took 0.6-1.3x (README, "Winograd"). The price is in the matrices:
coefficients up to 8, and $\\tfrac16, \\tfrac1{12}, \\tfrac1{24}$ in $G$, which binary floating point cannot hold exactly."""),
    ("code", """BT4, G4, AT4 = reference.WINOGRAD_MATRICES[4]
print("B^T =\\n", BT4, "\\nG =\\n", G4.round(4), "\\nA^T =\\n", AT4)
d6 = np.arange(36, dtype=float).reshape(6, 6) % 7           # any 6x6 tile
Y4 = AT4 @ ((G4 @ g @ G4.T) * (BT4 @ d6 @ BT4.T)) @ AT4.T    # 36 products
direct4 = np.array([[np.sum(d6[r:r + 3, c:c + 3] * g) for c in range(4)] for r in range(4)])  # 144 products
print("F(4x4, 3x3) == direct:", np.allclose(Y4, direct4), "  max difference", np.abs(Y4 - direct4).max())"""),
    ("md", """With channels, the products of one transformed position $(\\xi, \\nu)$ over all tiles and channels form one matrix
product: $M_{\\xi\\nu} = V_{\\xi\\nu} U_{\\xi\\nu}$ with $V_{\\xi\\nu}$ (tiles x $C_{in}$) and $U_{\\xi\\nu}$ ($C_{in}$ x $C_{out}$). So the fast
kernel (`numcnn.kernels.winograd`) is 16 (F(2x2)) or 36 (F(4x4)) BLAS products plus Numba transforms. The backward pass runs the same steps
transposed: $dM = A\\, dY\\, A^T$, then $dV = dM\\, U^T$ and $dx$ += $B\\, dV B^T$ per tile (tiles overlap, so their
contributions add up), and $dU = V^T dM$, $dw = G^T dU\\, G$.

**The price is rounding.** F(2x2, 3x3)'s transforms only multiply by $0, \\pm 1, \\pm\\tfrac12$ (exact in binary), but
they *add and subtract before multiplying*: every product $x\\,w$ of the direct sum is spread over several terms that cancel
in exact arithmetic, and each carries its own rounding error. The standard bound $|\\hat y - y| \\le \\gamma_m \\sum|\\text{terms}|$
(with $\\gamma_m = m u / (1 - m u)$, $u$ the unit roundoff, $m$ the roundings a term passes through) therefore has a larger
sum for Winograd: the same algorithm run with $|B^T|, |G|, |A^T|$ on $|x|, |w|$. `tests/test_winograd.py` derives $m$ for
each result and checks $|$Winograd $-$ direct$|$ against the two bounds, in float32 and float64."""),
    ("code", """rng = np.random.default_rng(0)
xs = rng.normal(size=(8, 32, 32, 32)).astype(np.float32)            # a CIFAR-style layer: 32 -> 32 channels
ws = rng.normal(scale=1 / np.sqrt(9 * 32), size=(3, 3, 32, 32)).astype(np.float32)
bs = np.zeros(32, np.float32)
direct = dict(padding="same", winograd_rule=False)                  # im2col + GEMM, whatever the shape
exact, _ = kernels.conv2d_forward(xs.astype(np.float64), ws.astype(np.float64), bs.astype(np.float64), **direct)
y_direct, _ = kernels.conv2d_forward(xs, ws, bs, **direct)           # direct sum, float32
errors = {"direct (im2col + GEMM)": np.abs(y_direct - exact).ravel()}
for tile in (2, 4):                                                  # Winograd, float32
    y_wino, _ = winograd.winograd_conv3x3_forward(xs, ws, bs, "same", tile=tile)
    errors[f"Winograd F({tile}x{tile}, 3x3)"] = np.abs(y_wino - exact).ravel()
print(f"max |y| = {np.abs(exact).max():.2f}; float32 error vs float64:")
for name, err in errors.items():
    print(f"  {name:24s} max {err.max():.2e}, mean {err.mean():.2e}")
bins = np.logspace(-10, -4, 70)
plt.figure(figsize=(7, 3))
for name, err in errors.items():
    plt.hist(err, bins=bins, alpha=0.5, label=name)
plt.xscale("log"); plt.xlabel("|float32 result - exact|"); plt.ylabel("outputs"); plt.legend()
plt.title("Rounding error of one 3x3 conv layer, 262,144 outputs"); plt.tight_layout(); plt.show()"""),
    ("md", """Here F(2x2, 3x3)'s error distribution nearly coincides with the direct sum's, which even has the longer tail:
Winograd's worst-case bound is larger (its absolute sum is 10-30x the direct one's at the worst output), but its sums
are shorter — $C_{in} = 32$ terms per matrix product instead of $9 C_{in} = 288$ — and typical errors stay far below
the bound. F(4x4, 3x3) sits higher (here 5x on average, 14x at the worst output): its coefficients up to 8 and its
rounded $\\tfrac16$ grow every term's error. Around $10^{-6}$ for outputs of size ~4 in float32 is still far below
what training notices, but none of them is bit-equal to the direct sum. That matters where numcnn relies on equal receptive fields giving **equal**
outputs — the fused Conv2D + MaxPooling2D kernel keeps TensorFlow's first-maximum tie rule that way — so that path
uses Winograd at inference only. Whether Winograd is *faster* depends on the shape: its matrix products are 4x
(2.25x) smaller, but its transforms make extra passes over memory (the README's Winograd section has the
measurements and the rule `kernels.conv.use_winograd` applies)."""),
]

NOTEBOOKS["02_pooling_dense_activations"] = [
    ("md", """# 2. Max pooling, dense layers, ReLU and softmax

The document's pooling formula $y_i = \\max(x_{2i-1}, x_{2i})$ is one-dimensional with windows of 2. In 2-D, per channel:

$$y[n, r, c, k] = \\max_{p < P_H,\\, q < P_W} x_{pad}[n, r s_h + p, c s_w + q, k] \\qquad (\\text{padding} = -\\infty)$$

**Backward**: each output's gradient goes to *one* input, the window's first maximum in row-major order (TensorFlow's
tie rule); windows that overlap (stride < pool size) **add** their gradients."""),
    ("code", SETUP),
    ("code", """from numcnn import kernels
x = np.array([[1, 3, 2, 2],
              [3, 0, 2, 2],
              [0, 5, 1, 0],
              [4, 1, 0, 1]], dtype=float).reshape(1, 4, 4, 1)
y, cache = kernels.maxpool2d_forward(x, (2, 2))
print("pooled:\\n", y[0, :, :, 0])
print("gradient of sum(y): where each window's gradient goes (ties: the first max wins)\\n",
      kernels.maxpool2d_backward(np.ones_like(y), cache)[0, :, :, 0])"""),
    ("md", "With a 2x2 window moved by 1 (overlapping), an element can win several windows: its gradient is the **sum**."),
    ("code", """y, cache = kernels.maxpool2d_forward(x, (2, 2), strides=(1, 1))
print(kernels.maxpool2d_backward(np.ones_like(y), cache)[0, :, :, 0])"""),
    ("md", "## Dense: a matrix product\n$y_j = f(\\sum_i x_i w_{ij} + b_j)$, i.e. $Y = f(XW + b)$ with $W$ of shape (inputs, units) as in Keras."),
    ("code", """rng = np.random.default_rng(0)
X, W, b = rng.normal(size=(2, 3)), rng.normal(size=(3, 4)), rng.normal(size=4)
print(np.allclose(kernels.dense_forward(X, W, b)[0], X @ W + b))"""),
    ("md", "## ReLU and a numerically stable softmax\n$\\mathrm{softmax}(z)_j = e^{z_j} / \\sum_k e^{z_k}$ overflows for large logits. Subtracting $\\max z$ changes nothing mathematically (it cancels) but keeps every exponent $\\le 0$."),
    ("code", """z = np.array([[1000.0, 1001.0, 999.0]])
with np.errstate(over="ignore", invalid="ignore"):
    naive = np.exp(z) / np.exp(z).sum()
print("naive:", naive, "  stable:", kernels.softmax_forward(z)[0])
print("relu:", kernels.relu_forward(np.array([-2.0, 0.0, 3.0]))[0])"""),
    ("md", """## Why the fast path may fuse Conv2D, ReLU and pooling

ReLU never changes the order of two numbers, so $\\max(\\mathrm{relu}(z)) = \\mathrm{relu}(\\max z)$: pool first, then apply
ReLU to 4x fewer values, and never store the full-size activation. The gradient is unchanged too: where the window's
maximum is $> 0$ the same position wins; where it is $\\le 0$ ReLU's derivative (0) kills the gradient either way.
`Sequential` runs every Conv2D + MaxPooling2D pair through `kernels.conv_pool_forward`; the spec is the chain of the
three ops, and the two agree:"""),
    ("code", """rng = np.random.default_rng(1)
x, w, b = rng.normal(size=(2, 9, 9, 1)), rng.normal(size=(3, 3, 1, 4)), rng.normal(size=4)
z, _ = kernels.conv2d_forward(x, w, b)
chain, _ = kernels.maxpool2d_forward(kernels.relu_forward(z)[0], (2, 2))   # conv -> relu -> pool
fused, _ = kernels.conv_pool_forward(x, w, b, pool_size=(2, 2), relu=True)   # one kernel
print("max |chain - fused| =", np.abs(chain - fused).max())"""),
]

NOTEBOOKS["03_backprop_by_hand"] = [
    ("md", """# 3. Backpropagation by hand

For a loss $L$ and a layer $y = g(x, w)$, backward turns $\\partial L/\\partial y$ into $\\partial L/\\partial x$ and $\\partial L/\\partial w$ by the chain rule.

* **Dense** $Y = XW + b$: $\\;\\partial L/\\partial X = (\\partial L/\\partial Y) W^T$, $\\;\\partial L/\\partial W = X^T (\\partial L/\\partial Y)$, $\\;\\partial L/\\partial b = \\sum_n \\partial L/\\partial Y_n$.
* **Convolution**: every product $x_{pad}[n, rs+p, cs+q, k]\\, w[p,q,k,j]$ sends $\\partial L/\\partial y[n,r,c,j]$ to both factors:
  $\\partial L/\\partial w[p,q,k,j] = \\sum_{n,r,c} \\partial L/\\partial y[n,r,c,j]\\; x_{pad}[n, rs+p, cs+q, k]$ and symmetrically for $x$.
* **Max pooling**: the gradient goes to the winner; overlapping windows add.
* **ReLU**: $\\partial L/\\partial x = \\partial L/\\partial y \\cdot [x > 0]$. **Softmax**: $\\partial L/\\partial z_i = p_i(\\partial L/\\partial p_i - \\sum_j p_j \\partial L/\\partial p_j)$.

We check each against **finite differences** in float64: $\\partial L/\\partial x_i \\approx (L(x + \\epsilon e_i) - L(x - \\epsilon e_i)) / 2\\epsilon$."""),
    ("code", """import numpy as np
from numcnn import kernels

def numerical_gradient(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]; x[i] = old + eps; plus = f(); x[i] = old - eps; minus = f(); x[i] = old
        grad[i] = (plus - minus) / (2 * eps)
    return grad

def relative_error(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b))

rng = np.random.default_rng(0)
x, w, b = rng.normal(size=(2, 6, 7, 3)), rng.normal(size=(3, 3, 3, 4)), rng.normal(size=4)
y, cache = kernels.conv2d_forward(x, w, b, (2, 2), "same")
upstream = rng.normal(size=y.shape)           # L = sum(upstream * y)
loss = lambda: np.sum(upstream * kernels.conv2d_forward(x, w, b, (2, 2), "same")[0])
dx, dw, db = kernels.conv2d_backward(upstream, cache)
for name, array, grad in [("dx", x, dx), ("dw", w, dw), ("db", b, db)]:
    print(f"conv {name}: relative error {relative_error(numerical_gradient(loss, array), grad):.1e}")"""),
    ("code", """xp = rng.permutation(np.arange(2 * 6 * 6 * 2, dtype=float)).reshape(2, 6, 6, 2)   # distinct values: no ties
y, cache = kernels.maxpool2d_forward(xp, (3, 3), (2, 2))
upstream = rng.normal(size=y.shape)
loss = lambda: np.sum(upstream * kernels.maxpool2d_forward(xp, (3, 3), (2, 2))[0])
print("max-pool dx relative error:", relative_error(numerical_gradient(loss, xp, eps=1e-3),
                                                    kernels.maxpool2d_backward(upstream, cache)))
z = rng.normal(size=(3, 5))
for name in ["relu", "softmax"]:
    forward, backward = getattr(kernels, f"{name}_forward"), getattr(kernels, f"{name}_backward")
    up = rng.normal(size=z.shape)
    err = relative_error(numerical_gradient(lambda: np.sum(up * forward(z)[0]), z), backward(up, forward(z)[1]))
    print(f"{name} relative error: {err:.1e}")"""),
    ("md", "## A wrong formula fails the check\nWriting `=` instead of `+=` in the max-pool backward is invisible when windows do not overlap. With overlapping windows the finite-difference check catches it:"),
    ("code", """def wrong_maxpool_backward(dy, x, pool=3, stride=2):
    dx = np.zeros_like(x)
    for n, r, c, k in np.ndindex(dy.shape):
        window = x[n, r*stride:r*stride+pool, c*stride:c*stride+pool, k]
        i, j = np.unravel_index(np.argmax(window), window.shape)
        dx[n, r*stride + i, c*stride + j, k] = dy[n, r, c, k]      # BUG: '=' instead of '+='
    return dx
y, _ = kernels.maxpool2d_forward(xp, (3, 3), (2, 2))
upstream = rng.normal(size=y.shape)
loss = lambda: np.sum(upstream * kernels.maxpool2d_forward(xp, (3, 3), (2, 2))[0])
print("wrong formula, relative error:", relative_error(numerical_gradient(loss, xp, eps=1e-3),
                                                     wrong_maxpool_backward(upstream, xp)))"""),
    ("md", "## The whole model\nThe same check on every weight of a small CNN, through `model.loss_and_gradients` (float64):"),
    ("code", """from numcnn import Sequential
from numcnn.layers import Input, Conv2D, MaxPooling2D, Flatten, Dense
model = Sequential([Input((8, 8, 1)), Conv2D(3, 3, activation="relu"), MaxPooling2D(2), Flatten(),
                    Dense(4, activation="softmax")], seed=0, dtype="float64")
model.compile("sgd", "sparse_categorical_crossentropy")
xb, yb = rng.normal(size=(4, 8, 8, 1)), np.array([0, 1, 2, 3])
_, grads = model.loss_and_gradients(xb, yb)
for param, grad in zip(model.trainable_params(), grads):
    numerical = numerical_gradient(lambda: model.loss_and_gradients(xb, yb)[0], param)
    print(param.shape, f"relative error {relative_error(numerical, grad):.1e}")"""),
]

NOTEBOOKS["04_training"] = [
    ("md", """# 4. Training: the document's Keras example, line by line in numcnn

```python
# Keras (the source document)
model = Sequential([
    Conv2D(32, (3, 3), activation='relu', input_shape=(28, 28, 1)),
    MaxPooling2D((2, 2)),
    Conv2D(64, (3, 3), activation='relu'),
    MaxPooling2D((2, 2)),
    Conv2D(64, (3, 3), activation='relu'),
    Flatten(),
    Dense(64, activation='relu'),
    Dense(10, activation='softmax')])
model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['accuracy'])
model.fit(x_train, y_train, epochs=5)
```"""),
    ("code", SETUP),
    ("code", """from numcnn.layers import Input, Conv2D, MaxPooling2D, Flatten, Dense
model = numcnn.Sequential([
    Input((28, 28, 1)),
    Conv2D(32, (3, 3), activation="relu"),
    MaxPooling2D((2, 2)),
    Conv2D(64, (3, 3), activation="relu"),
    MaxPooling2D((2, 2)),
    Conv2D(64, (3, 3), activation="relu"),
    Flatten(),
    Dense(64, activation="relu"),
    Dense(10, activation="softmax"),
], seed=0)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.summary()
print("initial loss (should be about ln 10 = 2.303):", model.evaluate(x_test, y_test)[0])"""),
    ("code", """history = model.fit(x_train, y_train, epochs=3, batch_size=32, seed=0, validation_data=(x_test, y_test))
print("held-out accuracy:", model.evaluate(x_test, y_test)[1])"""),
    ("code", """fig, axes = plt.subplots(1, 2, figsize=(9, 3))
epochs = [e + 1 for e in history.epoch]   # epochs 1, 2, 3 (each point is measured at the end of one)
for axis, key in zip(axes, ["loss", "accuracy"]):
    axis.plot(epochs, history.history[key], "o-", label="train (mean over the epoch)")
    axis.plot(epochs, history.history["val_" + key], "s--", label="held out (after the epoch)")
    axis.set_title(key); axis.set_xlabel("epoch"); axis.set_xticks(epochs); axis.legend()
plt.show()"""),
    ("md", "## What it gets wrong"),
    ("code", """probabilities = model.predict(x_test)
predicted = probabilities.argmax(axis=1)
wrong = np.flatnonzero(predicted != y_test)[:10]
fig, axes = plt.subplots(1, len(wrong), figsize=(1.2 * len(wrong), 1.8))
for axis, i in zip(np.atleast_1d(axes), wrong):
    axis.imshow(x_test[i, :, :, 0], cmap="gray"); axis.set_title(f"{y_test[i]}→{predicted[i]}"); axis.axis("off")
plt.show()"""),
    ("md", "## The learned 3x3 filters of the first layer"),
    ("code", """kernel = model.layers[0].params["kernel"]   # (3, 3, 1, 32), Keras layout
fig, axes = plt.subplots(2, 16, figsize=(12, 1.8))
for k, axis in enumerate(axes.ravel()):
    axis.imshow(kernel[:, :, 0, k], cmap="RdBu_r"); axis.axis("off")
plt.show()"""),
]

NOTEBOOKS["05_verify_against_tensorflow"] = [
    ("md", """# 5. Same weights, same batch: numcnn vs TensorFlow

`numcnn.verify` runs identical numbers through numcnn and Keras 3 (gradients from `tf.GradientTape`) and reports the
largest absolute and relative differences. This notebook runs the TensorFlow parts only when TensorFlow is installed."""),
    ("code", """try:
    from numcnn import verify
    tf, keras = verify.import_tensorflow()
    print("TensorFlow", tf.__version__, "/ Keras", keras.__version__)
except ImportError:
    tf = None
    print("TensorFlow is not installed: pip install -e '.[tf]' to run the comparisons below")"""),
    ("code", """import numpy as np
import numcnn
from numcnn.interop.keras import to_keras
if tf is not None:
    model = numcnn.seed_mnist_model(seed=0)
    keras_model = to_keras(model)                      # same layers, same weights
    x = np.random.default_rng(0).random((8, 28, 28, 1)).astype(np.float32)
    rows = verify.compare_model("seed model", model, x, keras_model=keras_model)
    print(verify.format_table(rows))"""),
    ("md", "## Losses and an Adam step\nKeras's Adam adds epsilon to the *uncorrected* $\\sqrt{v}$ and rounds the learning rate and betas through float32; numcnn does the same."),
    ("code", """if tf is not None:
    rng = np.random.default_rng(1)
    rows = []
    for case, ours, theirs, y_true, y_pred in verify.loss_cases(rng):
        rows += verify.compare_loss(case, ours, theirs, y_true, y_pred)
    for case, ours, theirs in verify.optimizer_cases():
        rows += verify.compare_optimizer(case, ours, theirs, rng)
    print(verify.format_table(rows))"""),
    ("md", "## Twenty training steps on the same batches"),
    ("code", """if tf is not None:
    print(verify.format_table(verify.seed_model_rows(steps=20)))"""),
]

NOTEBOOKS["06_generation_and_explanation"] = [
    ("md", """# 6. Generation and explanation with the network's own input gradient

The source document's `generate_digit` does not generate anything:"""),
    ("code", SETUP + """
model = numcnn.seed_mnist_model(seed=0)
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, epochs=3, batch_size=32, seed=0, verbose=0)
print("held-out accuracy:", model.evaluate(x_test, y_test)[1])"""),
    ("code", """def generate_digit(model, seed):          # as written in the source document
    noise = np.zeros((1, 28, 28, 1))
    noise[0, seed] = 1                       # sets one row of a zero image to 1
    prediction = model.predict(noise.astype(np.float32))
    return np.argmax(prediction)
print([int(generate_digit(model, seed)) for seed in range(5)], "- a class index, not an image")"""),
    ("md", """## Class images from a seed
Gradient ascent on the target **logit** with an image prior (decay, total variation, blur) and robustness to small
shifts/rotations. Without the prior, the same ascent produces patterns the network scores highly but nobody would call digits."""),
    ("code", """from numcnn.generate import class_images, Prior
with_prior = class_images(model, range(10), seeds=[0, 1], steps=128)
without = class_images(model, range(10), seeds=[0], steps=128, prior=Prior.off())
fig, axes = plt.subplots(3, 10, figsize=(10, 3.3))
for t in range(10):
    for row, image in enumerate([with_prior[t, 0], with_prior[t, 1], np.clip(without[t, 0], 0, 1)]):
        axes[row, t].imshow(image[:, :, 0], cmap="gray", vmin=0, vmax=1); axes[row, t].axis("off")
    axes[0, t].set_title(str(t))
plt.suptitle("rows: prior, seed 0 / prior, seed 1 / no prior"); plt.show()"""),
    ("md", "## The effect of each regulariser (class 3)"),
    ("code", """settings = {"all on": {}, "no TV": {"tv": 0}, "no blur": {"blur_every": 0}, "no jitter": {"jitter": 0, "rotate": 0, "scale": 0},
            "no decay": {"l1": 0, "l2": 0}}
from numcnn.generate import class_image
fig, axes = plt.subplots(1, len(settings), figsize=(10, 2.3))
for axis, (name, change) in zip(axes, settings.items()):
    axis.imshow(class_image(model, 3, seed=0, steps=128, **change)[:, :, 0], cmap="gray", vmin=0, vmax=1)
    axis.set_title(name); axis.axis("off")
plt.show()"""),
    ("md", "## DeepDream on a digit, and texture \"artwork\" (Gram matrices of a seeded random filter bank)"),
    ("code", """from numcnn.generate import deep_dream, texture
dream = deep_dream(model, x_test[0], ["conv2d_1"], seed=0, octaves=2, steps=10)
from skimage import data, transform
brick = transform.resize(data.brick(), (64, 64), anti_aliasing=True)
exemplar = np.stack([brick * 0.9 + 0.05, brick * 0.6 + 0.1, brick * 0.4 + 0.05], axis=-1)
art = texture(exemplar, seed=0, size=(64, 64), steps=100)
fig, axes = plt.subplots(1, 4, figsize=(10, 2.6))
for axis, image, title in zip(axes, [x_test[0, :, :, 0], dream[:, :, 0], exemplar, art],
                              ["digit", "dream (conv2d_1)", "exemplar", "synthesised texture"]):
    axis.imshow(image, cmap="gray" if image.ndim == 2 else None); axis.set_title(title); axis.axis("off")
plt.show()"""),
    ("md", """## Explanations: which pixels make the model say this?
Gradient-based maps are pixel-sharp; Grad-CAM works on the last conv layer's output, which is only 3x3 here, so
its map is a coarse blob upsampled to 28x28 (it shines on large images, not on MNIST); occlusion needs no gradient
at all. Integrated gradients should add up to the logit difference from a black image (completeness)."""),
    ("code", """from numcnn import explain
image, label = x_test[1], int(y_test[1])
methods = ["gradient", "gradient_x_input", "smoothgrad", "integrated_gradients", "gradcam", "occlusion"]
fig, axes = plt.subplots(1, len(methods) + 1, figsize=(13, 2.3))
axes[0].imshow(image[:, :, 0], cmap="gray"); axes[0].set_title(f"label {label}")
for axis, method in zip(axes[1:], methods):
    result = explain.saliency(model, image, label, method=method)
    heat = result[0] if isinstance(result, tuple) else result
    axis.imshow(np.abs(heat), cmap="inferno"); axis.set_title(method, fontsize=8)
for axis in axes: axis.axis("off")
plt.show()
_, completeness_error = explain.saliency(model, image, label, method="integrated_gradients")
print(f"integrated gradients completeness error: {completeness_error:.2%}")"""),
]


NOTEBOOKS["07_batchnorm_and_transposed_convolution"] = [
    ("md", """# 7. Batch normalization and transposed convolution, by hand

Two layers every modern CNN tutorial uses next: **batch normalization** (normalise each channel with the batch's
own statistics while training) and **transposed convolution** (the layer generative CNNs upsample with). For
each: the formula, the formula-literal reference loop, the fast kernel, a finite-difference check, and the check
against TensorFlow.

## Batch normalization

Per channel $c$, over the $M$ values of that channel in the batch ($M = N H W$ after a Conv2D):

$$\\mu = \\frac1M \\sum x, \\qquad \\sigma^2 = \\frac1M \\sum (x - \\mu)^2, \\qquad \\hat x = \\frac{x - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}}, \\qquad y = \\gamma \\hat x + \\beta$$

The variance is the **biased** one (divided by $M$), as Keras and TensorFlow use. At inference the moving
statistics replace $\\mu, \\sigma^2$; each training step updates them as
$\\text{moving} \\leftarrow \\text{moving} \\cdot m + \\text{batch} \\cdot (1 - m)$ with momentum $m = 0.99$."""),
    ("code", """import numpy as np
import numcnn
from numcnn import kernels
from numcnn.kernels import reference
np.set_printoptions(precision=5, suppress=True)
rng = np.random.default_rng(0)
x = rng.normal(2.0, 3.0, size=(4, 5, 5, 3))           # 4 images, 5x5, 3 channels, float64
gamma, beta = rng.uniform(0.5, 1.5, 3), rng.normal(size=3)
mean, var = reference.batchnorm_moments(x)
print("batch mean", mean, " biased variance", var)
y_ref, cache_ref = reference.batchnorm_forward(x, gamma, beta, mean, var, 1e-3, batch_statistics=True)
mean_f, var_f = kernels.batchnorm_moments(x)
y_fast, cache_fast = kernels.batchnorm_forward(x, gamma, beta, mean_f, var_f, 1e-3, batch_statistics=True)
print("reference loop vs fast kernel, max difference:", np.abs(y_ref - y_fast).max())
print("each channel of y has mean beta and std ~gamma:", y_fast.mean(axis=(0, 1, 2)), y_fast.std(axis=(0, 1, 2)))"""),
    ("md", """### The backward pass, and the classic mistake

$\\mu$ and $\\sigma^2$ are functions of **every** $x$ in the batch, so the chain rule has two more paths. With
$s = \\sqrt{\\sigma^2 + \\epsilon}$:

$$\\frac{\\partial L}{\\partial \\beta} = \\sum dy, \\qquad \\frac{\\partial L}{\\partial \\gamma} = \\sum dy\\, \\hat x, \\qquad
\\frac{\\partial L}{\\partial x} = \\frac{\\gamma}{s}\\Big(dy - \\overline{dy} - \\hat x\\, \\overline{dy\\, \\hat x}\\Big)$$

(bars: means over the channel's $M$ values). A from-scratch implementation that forgets the two correction terms
writes $\\partial L / \\partial x = \\gamma\\, dy / s$ — right for inference (constant statistics), wrong for
training. A float64 finite-difference check catches it at once:"""),
    ("code", """def numerical_gradient(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps; plus = f()
        x[i] = old - eps; minus = f()
        x[i] = old
        grad[i] = (plus - minus) / (2 * eps)
    return grad

def relative_error(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b))

dy = rng.normal(size=x.shape)
def loss():                       # L = sum(y * dy), with the batch's own statistics (training mode)
    m, v = kernels.batchnorm_moments(x)
    return np.sum(kernels.batchnorm_forward(x, gamma, beta, m, v, 1e-3, True)[0] * dy)

numerical = numerical_gradient(loss, x)
dx, dgamma, dbeta = kernels.batchnorm_backward(dy, kernels.batchnorm_forward(x, gamma, beta, *kernels.batchnorm_moments(x), 1e-3, True)[1])
naive_dx = gamma / np.sqrt(var + 1e-3) * dy        # the mistake: statistics treated as constants
print(f"full backward       vs finite differences: {relative_error(dx, numerical):.1e}")
print(f"naive backward      vs finite differences: {relative_error(naive_dx, numerical):.1e}   <- caught")"""),
    ("md", "### The layer, its moving statistics, and TensorFlow\n`BatchNormalization` keeps Keras's weight order `[gamma, beta, moving_mean, moving_variance]`; only gamma and beta are trainable. `fit` and `train_step` run it with batch statistics, `predict` and `evaluate` with the moving ones."),
    ("code", """from numcnn.layers import Input, BatchNormalization
x32 = x.astype(np.float32)
model = numcnn.Sequential([Input((5, 5, 3)), BatchNormalization(momentum=0.9)], seed=0)
for _ in range(3):
    model.forward(x32, training=True)            # each training forward updates the moving statistics once
print("moving mean after 3 training steps:", model.layers[0].get_weights()[2])
print("by the formula:                    ", (1 - 0.9 ** 3) * mean)
model.summary()"""),
    ("code", """try:
    from numcnn import verify
    tf, keras = verify.import_tensorflow()
except ImportError:
    print("TensorFlow is not installed: pip install -e '.[tf]' to run this check")
else:
    layer = keras.layers.BatchNormalization(momentum=0.9)
    layer.build(x32.shape)
    for _ in range(3):
        with tf.GradientTape() as tape:
            x_var = tf.Variable(x32)
            y_tf = layer(x_var, training=True)
            objective = tf.reduce_sum(y_tf * dy.astype(np.float32))
        dx_tf = tape.gradient(objective, x_var)
    ours = numcnn.Sequential([Input((5, 5, 3)), BatchNormalization(momentum=0.9)], seed=0)
    for _ in range(3):
        y_ours = ours.forward(x32, training=True)
    dx_ours = ours.backward(dy.astype(np.float32))
    print("forward, max rel. difference to TF:", np.abs(y_ours - y_tf.numpy()).max() / np.abs(y_tf.numpy()).max())
    print("dx,      max rel. difference to TF:", np.abs(dx_ours - dx_tf.numpy()).max() / np.abs(dx_tf.numpy()).max())
    for name, a, b in zip(["gamma", "beta", "moving_mean", "moving_variance"], ours.get_weights(), layer.get_weights()):
        print(f"{name:16s} max difference to TF: {np.abs(a - b).max():.1e}")"""),
    ("md", """## Transposed convolution

A Conv2D maps an image to a smaller grid of sums. Its **input gradient** runs the other way: every output
gradient sends a copy of the kernel, scaled by it, back onto the input, `stride` pixels apart, overlapping copies
adding up. A transposed convolution is exactly that map used as a layer — it *upsamples*:

$$y_{full}[n,\\; r s_h + p,\\; c s_w + q,\\; j] \\mathrel{+}= x[n, r, c, k]\\; w[p, q, j, k], \\qquad y = \\text{crop}(y_{full}) + b$$

Keras stores its kernel as $(K_H, K_W, \\text{filters}, C_{in})$ — out before in, the reverse of Conv2D — because it
*is* the kernel of the Conv2D whose input gradient it computes. Output size: `valid` $(H-1)s + \\max(K, s)$,
`same` $H s$ (the crop is TF's asymmetric 'same' padding of that Conv2D)."""),
    ("code", """x = rng.normal(size=(2, 4, 4, 3))
w = rng.normal(size=(3, 3, 5, 3))                  # (kh, kw, filters=5, in_channels=3)
b = np.zeros(5)
for padding in ("valid", "same"):
    y_ref, _ = reference.conv2d_transpose_forward(x, w, b, (2, 2), padding)
    y_fast, cache = kernels.conv2d_transpose_forward(x, w, b, (2, 2), padding)
    print(f"{padding}: 4x4 -> {y_ref.shape[1]}x{y_ref.shape[2]}, reference vs fast max difference {np.abs(y_ref - y_fast).max():.1e}")

# The same numbers as a Conv2D's input gradient: a 9x9 image, kernel w read as HWIO (in=5, out=3), stride 2
_, conv_cache = kernels.conv2d_forward(np.zeros((2, 9, 9, 5)), w, np.zeros(3), (2, 2), "valid")
dx_of_conv, _, _ = kernels.conv2d_backward(x, conv_cache)
y_valid, _ = kernels.conv2d_transpose_forward(x, w, b, (2, 2), "valid")
print("Conv2DTranspose forward == Conv2D input gradient:", np.array_equal(y_valid, dx_of_conv) or np.abs(y_valid - dx_of_conv).max())"""),
    ("code", """dy = rng.normal(size=y_valid.shape)
dx, dw, db = kernels.conv2d_transpose_backward(dy, cache=kernels.conv2d_transpose_forward(x, w, b, (2, 2), "valid")[1])
f = lambda: np.sum(kernels.conv2d_transpose_forward(x, w, b, (2, 2), "valid")[0] * dy)
print(f"dx vs finite differences: {relative_error(dx, numerical_gradient(f, x)):.1e}")
print(f"dw vs finite differences: {relative_error(dw, numerical_gradient(f, w)):.1e}")"""),
    ("md", "Where the stride does not divide the kernel size, some output pixels receive more kernel copies than their neighbours: that is the source of the *checkerboard artefacts* of generators built on transposed convolutions (Odena et al. 2016). With kernel 3 and stride 2, count the copies:"),
    ("code", """ones = np.ones((1, 4, 4, 1))
coverage, _ = kernels.conv2d_transpose_forward(ones, np.ones((3, 3, 1, 1)), np.zeros(1), (2, 2), "same")
print(coverage[0, :, :, 0])"""),
    ("code", """try:
    tf, keras = verify.import_tensorflow()
except ImportError:
    print("TensorFlow is not installed: pip install -e '.[tf]' to run this check")
else:
    from numcnn.layers import Conv2DTranspose
    layer = keras.layers.Conv2DTranspose(5, 3, strides=2, padding="same")
    x32 = x.astype(np.float32)
    y_tf = layer(x32).numpy()
    ours = numcnn.Sequential([Input((4, 4, 3)), Conv2DTranspose(5, 3, strides=2, padding="same")], seed=0)
    ours.set_weights(layer.get_weights())       # the same kernel layout: no transposes
    y_ours = ours.predict(x32)
    print("Keras weight shapes:", [w.shape for w in layer.get_weights()])
    print("forward, max rel. difference to TF:", np.abs(y_ours - y_tf).max() / np.abs(y_tf).max())"""),
]


NOTEBOOKS["08_vae_by_hand"] = [
    ("md", """# 8. A variational autoencoder by hand

`generate_digit(model, seed)` should turn a seed into a *new* digit. A classifier cannot do that; a **conditional
variational autoencoder** (Kingma & Welling 2014; Sohn et al. 2015) can. Two plain numcnn `Sequential` networks:

* the **encoder** reads an image $x$ (with its label as 10 extra constant input planes) and outputs the mean
  $\\mu$ and the log-variance $\\log\\sigma^2$ of a Gaussian over a small latent vector $z$: "which styles could
  have drawn this image";
* the **decoder** reads $[z, \\text{onehot}(y)]$ and outputs pixel probabilities.

To *generate*, skip the encoder: draw $z \\sim N(0, I)$ from the seed and decode it with the label you want.
Training makes that work by pulling every $q(z \\mid x)$ towards $N(0, I)$ (the KL term) while asking the decoder
to redraw $x$ from a sample of it (the reconstruction term). This notebook derives both gradients, checks them
with finite differences, and trains a small VAE."""),
    ("code", SETUP + """
from numcnn.generate import sample_grid, train_generator
from numcnn.generate.vae import ConditionalVAE
y_train = y_train.astype(np.int64)"""),
    ("md", """## The loss

For one image, with $\\sigma = e^{\\log\\sigma^2 / 2}$ and a noise vector $\\varepsilon \\sim N(0, I)$:

$$z = \\mu + \\sigma \\odot \\varepsilon \\qquad \\text{(the reparameterisation)}$$

$$L = \\underbrace{\\sum_{\\text{pixels}} \\mathrm{BCE}(\\ell, x)}_{\\text{reconstruction}}
\\; + \\; \\beta \\underbrace{\\Big(-\\tfrac12 \\sum_j \\big(1 + \\log\\sigma_j^2 - \\mu_j^2 - \\sigma_j^2\\big)\\Big)}_{\\mathrm{KL}(N(\\mu, \\sigma^2)\\,\\|\\,N(0, I))}$$

where $\\ell$ are the decoder's logits and $\\mathrm{BCE}(\\ell, t) = \\max(\\ell, 0) - \\ell t + \\log(1 + e^{-|\\ell|})$.
A batch's loss is the mean over its $N$ images. The trick of the reparameterisation: the randomness sits in
$\\varepsilon$, a constant input, so $z$ is a differentiable function of $\\mu$ and $\\log\\sigma^2$.

## Its gradients, by hand

* Pixels: $\\partial L / \\partial \\ell = \\mathrm{sigmoid}(\\ell) - x$ (sigmoid and BCE fused), carried back
  through the decoder to $\\partial L / \\partial [z, \\text{onehot}]$. The one-hot is a constant: the backward of the
  concatenation is a **slice**, keep the first `latent_dim` columns.
* Reparameterisation: $\\partial z / \\partial \\mu = 1$ and, since $d\\sigma / d\\log\\sigma^2 = \\sigma / 2$,
  $\\partial z / \\partial \\log\\sigma^2 = \\sigma \\varepsilon / 2$.
* KL: $\\partial \\mathrm{KL} / \\partial \\mu = \\mu$ and $\\partial \\mathrm{KL} / \\partial \\log\\sigma^2 = (\\sigma^2 - 1) / 2$.

Together, what goes into the encoder's backward:

$$\\frac{\\partial L}{\\partial \\mu} = \\frac{\\partial L}{\\partial z} + \\beta \\mu, \\qquad
\\frac{\\partial L}{\\partial \\log\\sigma^2} = \\frac{\\partial L}{\\partial z} \\odot \\frac{\\sigma \\varepsilon}{2} + \\beta\\, \\frac{\\sigma^2 - 1}{2}$$

First the two new pieces on their own, against central differences (float64):"""),
    ("code", """def numerical_gradient(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps; plus = f()
        x[i] = old - eps; minus = f()
        x[i] = old
        grad[i] = (plus - minus) / (2 * eps)
    return grad

def relative_error(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b))

rng = np.random.default_rng(0)
mu, logvar, eps = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
upstream = rng.normal(size=(3, 4))        # stands in for dL/dz from the decoder

def kl():
    return -0.5 * np.sum(1 + logvar - mu ** 2 - np.exp(logvar))

def through_z():                          # a loss that sees mu and logvar only through z
    return np.sum(upstream * (mu + np.exp(logvar / 2) * eps))

print("dKL/dmu          :", relative_error(numerical_gradient(kl, mu), mu))
print("dKL/dlogvar      :", relative_error(numerical_gradient(kl, logvar), (np.exp(logvar) - 1) / 2))
print("dz/dmu * dL/dz   :", relative_error(numerical_gradient(through_z, mu), upstream))
print("dz/dlogvar * dL/dz:", relative_error(numerical_gradient(through_z, logvar), upstream * np.exp(logvar / 2) * eps / 2))"""),
    ("md", """A wrong derivative fails the same check. The classic slip is $\\partial z / \\partial \\log\\sigma^2 = \\varepsilon$
(differentiating as if $z = \\mu + \\log\\sigma^2 \\cdot \\varepsilon$):"""),
    ("code", """print("wrong dz/dlogvar:", relative_error(numerical_gradient(through_z, logvar), upstream * eps), "  <- caught")"""),
    ("md", """## The whole model

`ConditionalVAE.loss_and_gradients(x, labels, eps)` runs the forward pass, the hand-written backward above and
returns every weight's gradient. On a small float64 VAE (8x8 images, 2 and 3 filters) each one is checked
against central differences of the loss:"""),
    ("code", """small = ConditionalVAE((8, 8, 1), num_classes=3, latent_dim=2, filters=(2, 3), hidden=4, beta=1.0,
                       seed=0, dtype="float64")
for network in (small.encoder, small.decoder):   # non-zero biases: no ReLU sits exactly on its kink
    network.set_weights([w + 0.1 * rng.normal(size=w.shape) if w.ndim == 1 else w for w in network.get_weights()])
xs, ys = rng.random((3, 8, 8, 1)), np.array([0, 2, 1])
eps_small = rng.normal(size=(3, 2))
losses, encoder_grads, decoder_grads = small.loss_and_gradients(xs, ys, eps_small)
grads = [g.copy() for g in encoder_grads + decoder_grads]
loss = lambda: small.loss_and_gradients(xs, ys, eps_small)[0]["loss"]
print(losses)
params = small.encoder.trainable_params() + small.decoder.trainable_params()
names = [f"encoder {i}" for i in range(len(encoder_grads))] + [f"decoder {i}" for i in range(len(decoder_grads))]
for name, param, grad in zip(names, params, grads):
    print(f"{name}: shape {str(param.shape):15s} relative error {relative_error(numerical_gradient(loss, param, 1e-5), grad):.1e}")"""),
    ("md", """## A tiny training run

The library's defaults train 30 epochs on 4,000 digits; here 2,000 digits for 4 epochs, to see the method work
in a few seconds. `train_generator` is Adam over both networks; the seed fixes the weights, the shuffling and
every $\\varepsilon$, so the run gives the same bits each time."""),
    ("code", """import time
start = time.perf_counter()
vae = train_generator(x_train[:2000], y_train[:2000], kind="vae", epochs=4, seed=0, progress=False)
print(f"trained in {time.perf_counter() - start:.1f} s")
for key, values in vae.history.items():
    print(f"{key:15s}", " ".join(f"{v:7.1f}" for v in values))"""),
    ("md", """## New digits from seeds

Row = label, column = seed. The seed picks $z$, the *style*; the label picks the class. Down a column the style
(slant, thickness) stays while the digit changes; along a row the digit stays while the style changes."""),
    ("code", """grid = sample_grid(vae, labels=range(10), seeds=range(8))
fig, axes = plt.subplots(10, 8, figsize=(6, 7.5))
for i in range(10):
    for j in range(8):
        axes[i, j].imshow(grid[i, j, :, :, 0], cmap="gray", vmin=0, vmax=1); axes[i, j].axis("off")
plt.suptitle("sample(vae, label, seed): rows = label 0-9, columns = seed 0-7"); plt.tight_layout(); plt.show()"""),
    ("md", """After 4 epochs every row is its label, blurry — and the seeds hardly differ. The `kl` line of the history
says why: a KL below one nat (summed over 16 latent dimensions) means $q(z \\mid x)$ is still almost
$N(0, I)$ for every image, so $z$ carries almost nothing about the image and the decoder draws each class from
the label alone: an average digit. This is **posterior collapse**, common early in training, when the label
already explains most of the image. With longer training the encoder starts to put the *style* into $z$ (the KL
grows and the seeds differ: the library's 30 epochs give a diversity of 0.7 of real digits in
`benchmarks/generation_quality.py`).

The blur is the VAE's nature: the decoder is trained to output the *expected* pixels over all the images
$q(z \\mid x)$ could stand for, an average. The KL weight $\\beta$ sets the trade-off: a larger $\\beta$ pulls every
$q(z \\mid x)$ closer to $N(0, I)$ (seeds land where the decoder was trained: more recognisable, more alike), a
smaller one lets the codes spread out (sharper reconstructions, but prior samples fall into gaps between the
codes of real images and decode to scribbles). numcnn's default is $\\beta = 3$: with $\\beta = 1$ some seeds drew
the same scribble for every label.

## The latent space: where real digits land

The encoder's $\\mu$ of real test digits, on its two highest-variance directions, against draws from the prior:"""),
    ("code", """mu_real, _ = vae.encode(x_test[:500], y_test[:500].astype(np.int64))
centered = mu_real - mu_real.mean(axis=0)
_, _, directions = np.linalg.svd(centered, full_matrices=False)
prior = rng.standard_normal((500, vae.latent_dim))
plt.figure(figsize=(4.5, 4))
plt.scatter(*(prior @ directions[:2].T).T, s=4, alpha=0.4, label="z ~ N(0, I) (seeds)")
plt.scatter(*(mu_real @ directions[:2].T).T, s=4, alpha=0.6, label="mu of real test digits")
plt.legend(); plt.title("latent space, 2 main directions"); plt.tight_layout(); plt.show()
print("mean |mu| per dimension:", np.abs(mu_real).mean(axis=0).round(2))"""),
    ("md", """The means of real digits sit in a small cloud, much narrower than the prior: each $q(z \\mid x)$ is a
Gaussian of standard deviation close to 1 around a mean close to 0, nearly the prior itself. That is the
collapse above seen from the latent side: the code hardly depends on the image yet. Train longer
(`epochs=30`, about two minutes of CPU) and run this cell again: measured with numcnn's defaults, about 5 of the
16 dimensions come into full use (their means spread over the prior's range, standard deviation 0.8-1.1, with
$\\sigma \\approx 0.2$-$0.45$), 3 or 4 partly, and the other 7 stay unused ($\\sigma > 0.9$, means near 0): the VAE
spends only as many dimensions as the style needs."""),
]

NOTEBOOKS["09_gan_by_hand"] = [
    ("md", """# 9. A generative adversarial network by hand

A GAN (Goodfellow et al. 2014; DCGAN, Radford et al. 2016) trains two plain numcnn `Sequential` networks against
each other:

* the **generator** $G$ turns $[z, \\text{onehot}(y)]$, $z \\sim N(0, I)$ from the seed, into an image;
* the **discriminator** $D$ reads an image and outputs a logit $d$: "real" ($d > 0$) or "made by $G$". numcnn's
  $D$ also outputs 10 class logits $c$ (an auxiliary classifier, AC-GAN, Odena et al. 2017): it is what makes $G$
  draw *the asked-for* digit.

No autograd: $G$'s gradient is the gradient of $D$'s loss with respect to $D$'s **input**, which `D.backward`
returns, fed into `G.backward`. This notebook derives the losses, checks that chain with finite differences,
and trains a small GAN."""),
    ("code", SETUP + """
from numcnn.generate import sample_grid, train_generator
from numcnn.generate.gan import ConditionalGAN
from numcnn.generate.generative import bce_from_logits, sigmoid, one_hot
y_train = y_train.astype(np.int64)"""),
    ("md", """## The two losses

With $\\mathrm{BCE}(d, t) = \\max(d, 0) - d t + \\log(1 + e^{-|d|})$ (binary cross-entropy of a logit) and
$\\mathrm{CE}$ the softmax cross-entropy of the class logits, over a batch of real images $x$ and fakes $G(z)$:

$$L_D = \\overline{\\mathrm{BCE}(d_{real}, 1)} + \\overline{\\mathrm{BCE}(d_{fake}, 0)} + \\overline{\\mathrm{CE}(c_{real}, y)}$$

$$L_G = \\overline{\\mathrm{BCE}(d_{fake}, 1)} + \\overline{\\mathrm{CE}(c_{fake}, y_{fake})}$$

$D$ learns to tell real from fake (and to classify real digits); $G$ learns to make $D$ call its images real and
of the asked-for class. $L_G$ is the **non-saturating** loss: the original minimax game would have $G$
*minimise* $-\\mathrm{BCE}(d_{fake}, 0) = \\log(1 - \\mathrm{sigmoid}(d_{fake}))$. Both push $d_{fake}$ up, but their
derivatives with respect to the logit differ:

$$\\frac{\\partial}{\\partial d} \\log(1 - \\mathrm{sigmoid}(d)) = -\\mathrm{sigmoid}(d), \\qquad
\\frac{\\partial}{\\partial d} \\mathrm{BCE}(d, 1) = \\mathrm{sigmoid}(d) - 1$$

Early in training $D$ rejects the fakes easily ($d_{fake} \\ll 0$): there the minimax gradient vanishes and $G$
learns nothing, while the non-saturating one is close to $-1$, its largest."""),
    ("code", """d = np.linspace(-8, 8, 200)
plt.figure(figsize=(5.5, 3.2))
plt.plot(d, -sigmoid(d), label="minimax: d/dd log(1 - sigmoid(d)) = -sigmoid(d)")
plt.plot(d, sigmoid(d) - 1, label="non-saturating: d/dd BCE(d, 1) = sigmoid(d) - 1")
plt.axvspan(-8, -2, color="grey", alpha=0.15); plt.text(-7.8, -0.5, "D rejects\\nthe fakes", fontsize=8)
plt.xlabel("discriminator logit d of a fake"); plt.ylabel("gradient G receives"); plt.legend(fontsize=7)
plt.tight_layout(); plt.show()
# and the derivative of the stable BCE formula, against central differences:
h = 1e-6
numerical = (bce_from_logits(d + h, 1.0) - bce_from_logits(d - h, 1.0)) / (2 * h)
print("max |numerical - (sigmoid(d) - 1)| =", np.abs(numerical - (sigmoid(d) - 1)).max())"""),
    ("md", """## The generator's gradient is the discriminator's input gradient

$L_G$ depends on $G$'s weights $\\theta$ only through the fake images $F = G(z; \\theta)$:

$$\\frac{\\partial L_G}{\\partial \\theta} = \\frac{\\partial L_G}{\\partial F} \\cdot \\frac{\\partial F}{\\partial \\theta}$$

The first factor is an *input gradient* of $D$: run $D$ forward on $F$, start its backward pass from
$\\partial L_G / \\partial [d, c] = [(\\mathrm{sigmoid}(d) - 1)/N, (\\mathrm{softmax}(c) - \\text{onehot}(y_{fake}))/N]$,
and `D.backward` returns $\\partial L_G / \\partial F$. The second factor is `G.backward` of it. Checked on a small
float64 GAN (8x8 images): first $\\partial L_G / \\partial F$ against central differences in the pixels of $F$:"""),
    ("code", """def numerical_gradient(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps; plus = f()
        x[i] = old - eps; minus = f()
        x[i] = old
        grad[i] = (plus - minus) / (2 * eps)
    return grad

def relative_error(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b))

rng = np.random.default_rng(0)
small = ConditionalGAN((8, 8, 1), num_classes=3, latent_dim=2, filters=(2, 3), dropout=0.0, seed=0, dtype="float64")
D, G = small.discriminator, small.generator
D.set_weights([w + 0.1 * rng.normal(size=w.shape) if w.ndim == 1 else w for w in D.get_weights()])
z, fake_labels = rng.normal(size=(3, 2)), np.array([0, 2, 1])
fake = G.forward(np.concatenate([z, one_hot(fake_labels, 3, np.float64)], axis=1), training=True)

def generator_loss(images):
    outputs = D.forward(images, training=True)
    return small._output_gradient(outputs, fake_labels, 1.0, small.class_weight)   # (L_G, dL_G/d outputs)

_, doutputs = generator_loss(fake)
dfake = D.backward(doutputs)                      # D's input gradient = dL_G / dF
print("dL_G/dF vs finite differences:", relative_error(numerical_gradient(lambda: generator_loss(fake)[0], fake), dfake))"""),
    ("md", """Then the whole training step: `loss_and_gradients` computes $G$'s gradients through that chain and $D$'s
gradients of $L_D$. Every weight of both, against central differences of the two losses:"""),
    ("code", """real, real_labels = rng.random((3, 8, 8, 1)), np.array([1, 0, 2])
losses, g_grads, d_grads = small.loss_and_gradients(real, real_labels, z, fake_labels)
g_grads, d_grads = [g.copy() for g in g_grads], [g.copy() for g in d_grads]
print(losses)
loss_of = lambda key: (lambda: small.loss_and_gradients(real, real_labels, z, fake_labels)[0][key])
for name, network, grads, key in [("G", G, g_grads, "generator"), ("D", D, d_grads, "discriminator")]:
    for i, (param, grad) in enumerate(zip(network.trainable_params(), grads)):
        error = relative_error(numerical_gradient(loss_of(key), param, 1e-5), grad)
        print(f"{name} weight {i}: shape {str(param.shape):15s} relative error {error:.1e}")"""),
    ("md", """## A tiny training run

One step: $G$ draws a batch of fakes (for random labels); $D$'s gradients of $L_D$ on real and fake; $G$'s
gradients of $L_G$ through $D$; one Adam step each ($\\beta_1 = 0.5$, as in DCGAN). The library's defaults train
on 4,000 digits for 80 epochs; here 2,000 digits for 5 epochs: enough to watch the game start."""),
    ("code", """import time
start = time.perf_counter()
gan = train_generator(x_train[:2000], y_train[:2000], kind="gan", epochs=5, seed=0, progress=False)
print(f"trained in {time.perf_counter() - start:.1f} s")
for key, values in gan.history.items():
    print(f"{key:20s}", " ".join(f"{v:6.2f}" for v in values))"""),
    ("md", """Neither loss goes to zero: each network's progress is the other's loss. A discriminator loss near 0 would
mean $D$ wins outright and $G$'s gradient fades; a generator loss collapsing towards 0 while $D$'s explodes would
mean $D$ has stopped learning."""),
    ("code", """grid = sample_grid(gan, labels=range(10), seeds=range(8))
fig, axes = plt.subplots(10, 8, figsize=(6, 7.5))
for i in range(10):
    for j in range(8):
        axes[i, j].imshow(grid[i, j, :, :, 0], cmap="gray", vmin=0, vmax=1); axes[i, j].axis("off")
plt.suptitle("sample(gan, label, seed) after 5 epochs: rows = label, columns = seed"); plt.tight_layout(); plt.show()"""),
    ("md", """## Watching for mode collapse

Look along a row of the grid: after this short run the seed hardly matters, each row is nearly *one* blurry
digit. That is **mode collapse**: the generator has found one image per class that fools the young
discriminator and has no reason yet to draw others. The losses do not show it; the samples do, and so does a
number: per class, the mean pairwise distance between the images of different seeds, divided by the same for real
digits of that class (1: as varied as real data, 0: one picture). With more training the discriminator learns to
reject the repeated image and the generator spreads out again: numcnn's benchmark
(`benchmarks/generation_quality.py`, 4,000 digits) measured 0.52 after 40 epochs and 0.75 after 80, the
default."""),
    ("code", """from numcnn.generate.quality import diversity
print(f"diversity of the grid above: {diversity(grid, range(10), x_test, y_test.astype(np.int64)):.2f}")
collapsed = np.repeat(grid[:, :1], 8, axis=1) + 0.01 * rng.random(grid.shape).astype(np.float32)
print(f"a collapsed generator (one image per class, tiny noise): {diversity(collapsed, range(10), x_test, y_test.astype(np.int64)):.2f}")"""),
]


def build() -> list[Path]:
    paths = []
    for name, cells in NOTEBOOKS.items():
        notebook = new_notebook(cells=[new_markdown_cell(text) if kind == "md" else new_code_cell(text)
                                       for kind, text in cells])
        for index, cell in enumerate(notebook.cells):
            cell.id = f"cell-{index:02d}"  # stable ids: rebuilding an unchanged notebook changes nothing
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        path = HERE / f"{name}.ipynb"
        nbformat.write(notebook, path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for path in build():
        print("wrote", path)
