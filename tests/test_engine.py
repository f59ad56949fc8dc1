"""The Value engine and the building blocks against central finite differences and hand computations."""
import math
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import microdiffusion as md
from float_reference import float_name_gradient
from microdiffusion import Value


def numeric_grads(f, xs, h=1e-6):
    """d f / d x_i by central differences, f taking and returning plain floats."""
    grads = []
    for i in range(len(xs)):
        up, down = list(xs), list(xs)
        up[i] += h
        down[i] -= h
        grads.append((f(up) - f(down)) / (2 * h))
    return grads


class GradCheck(unittest.TestCase):
    def check(self, build, xs, tol=1e-6):
        """build(values) must return one Value; its backward gradients must match the numeric ones."""
        values = [Value(x) for x in xs]
        out = build(values)
        out.backward()
        expected = numeric_grads(lambda floats: build([Value(x) for x in floats]).data, xs)
        for i, (got, want) in enumerate(zip([v.grad for v in values], expected)):
            self.assertAlmostEqual(got, want, delta=tol * max(1.0, abs(want)), msg=f"input {i}")
        return out

    def test_primitive_ops(self):
        cases = {
            'add': lambda v: v[0] + v[1],
            'mul': lambda v: v[0] * v[1],
            'pow': lambda v: v[0] ** 3,
            'pow negative': lambda v: v[0] ** -0.5,
            'exp': lambda v: v[0].exp(),
            'log': lambda v: v[0].log(),
            'relu on': lambda v: v[0].relu(),
            'relu off': lambda v: (v[0] * -1).relu(),
        }
        for name, build in cases.items():
            with self.subTest(op=name):
                self.check(build, [1.7, -0.4])

    def test_derived_ops(self):
        cases = {
            'neg': lambda v: -v[0],
            'sub': lambda v: v[0] - v[1],
            'rsub': lambda v: 2.5 - v[0],
            'radd': lambda v: 2.5 + v[0],
            'rmul': lambda v: 2.5 * v[0],
            'truediv': lambda v: v[0] / v[1],
            'rtruediv': lambda v: 2.5 / v[1],
        }
        for name, build in cases.items():
            with self.subTest(op=name):
                self.check(build, [1.3, -0.7])

    def test_constants_mix_with_values(self):
        out = self.check(lambda v: (v[0] + 1.0) * 3.0 - 0.5, [2.0])
        self.assertEqual(out.data, 8.5)

    def test_node_used_twice_accumulates(self):
        # x appears twice (x * x), and a shared inner node feeds two branches
        self.check(lambda v: v[0] * v[0], [1.9])
        def build(v):
            inner = v[0] * v[1]
            return inner * inner + inner.exp()
        self.check(build, [0.6, -1.1])

    def test_nary_sum(self):
        out = self.check(lambda v: Value.sum(v) * Value.sum(v[:2]), [0.3, -1.2, 2.0, 0.7])
        self.assertAlmostEqual(out.data, (0.3 - 1.2 + 2.0 + 0.7) * (0.3 - 1.2))

    def test_nary_dot(self):
        out = self.check(lambda v: Value.dot(v[:3], v[3:]), [0.3, -1.2, 2.0, 0.7, 0.1, -0.5])
        self.assertAlmostEqual(out.data, 0.3 * 0.7 - 1.2 * 0.1 - 2.0 * 0.5)
        self.check(lambda v: Value.dot(v[:2], v[:2]), [0.3, -1.2])  # the same values on both sides

    def test_rmsnorm(self):
        xs = [0.5, -1.5, 2.0, 0.25]
        for j in range(len(xs)):
            with self.subTest(output=j):
                self.check(lambda v: md.rmsnorm(v)[j], xs)
        # its value against a hand computation, with Values and with floats
        rms = math.sqrt(sum(x * x for x in xs) / 4 + 1e-5)
        self.assertAlmostEqual(md.rmsnorm([Value(x) for x in xs])[1].data, -1.5 / rms, places=12)
        self.assertAlmostEqual(md.rmsnorm(xs)[1], -1.5 / rms, places=12)

    def test_softmax(self):
        logits = [0.2, -1.0, 3.0, 0.5]
        for j in range(len(logits)):
            with self.subTest(output=j):
                self.check(lambda v: md.softmax(v)[j], logits)
        want = [math.exp(z) / sum(math.exp(y) for y in logits) for z in logits]
        for got in (md.softmax(logits), [p.data for p in md.softmax([Value(z) for z in logits])]):
            for g, w in zip(got, want):
                self.assertAlmostEqual(g, w, places=12)
        self.assertEqual(md.softmax([1000.0, 0.0]), [1.0, math.exp(-1000.0)])  # no overflow

    def test_attention(self):
        # one head of size 2 reading 3 positions: q (2), then 3 keys and 3 values (2 each)
        xs = [0.3, -0.8, 0.5, 1.0, -0.4, 0.2, 1.5, -1.1, 0.7, 0.1, -0.6, 0.9, 0.4, -0.3, 2.0]
        def head(v, d):
            q, keys, values = v[0:2], [v[2:4], v[4:6], v[6:8]], [v[8:10], v[10:12], v[12:14]]
            return md.attention(q, keys, values)[d] * v[14]  # through one more weight, as wo does
        for d in range(2):
            with self.subTest(output=d):
                self.check(lambda v: head(v, d), xs)
        # by hand: the softmax of q . k / sqrt(2), then the weighted sum of the values
        scores = [(0.3 * k0 - 0.8 * k1) / math.sqrt(2) for k0, k1 in ((0.5, 1.0), (-0.4, 0.2), (1.5, -1.1))]
        weights = [math.exp(z) / sum(math.exp(y) for y in scores) for z in scores]
        want = sum(w * v0 for w, v0 in zip(weights, (0.7, -0.6, 0.4)))
        self.assertAlmostEqual(md.attention(xs[0:2], [xs[2:4], xs[4:6], xs[6:8]], [xs[8:10], xs[10:12], xs[12:14]])[0],
                               want, places=12)

    def test_cross_entropy(self):
        logits = [0.2, -1.0, 3.0, 0.5]
        out = self.check(lambda v: md.cross_entropy(v, 1), logits)
        want = -math.log(math.exp(-1.0) / sum(math.exp(z) for z in logits))
        self.assertAlmostEqual(out.data, want, places=12)
        self.assertAlmostEqual(md.cross_entropy(logits, 1), want, places=12)
        # no overflow and no log(0) far from zero
        self.assertAlmostEqual(md.cross_entropy([1000.0, 0.0], 0), 0.0, places=12)
        self.assertAlmostEqual(md.cross_entropy([1000.0, 0.0], 1), 1000.0, places=9)

    def test_linear_and_relu_on_values_and_floats(self):
        w = [[0.5, -1.0], [2.0, 0.25], [-0.5, -0.5]]
        x = [1.5, 0.5]
        want = [0.25, 3.125, -1.0]
        self.assertEqual(md.linear(x, w), want)
        self.assertEqual([y.data for y in md.linear([Value(xi) for xi in x], [[Value(wi) for wi in row] for row in w])], want)
        self.assertEqual(md.relu(want), [0.25, 3.125, 0.0])
        self.assertEqual([y.data for y in md.relu([Value(y) for y in want])], [0.25, 3.125, 0.0])

    def test_deep_graph_needs_no_recursion(self):
        x = Value(1.0)
        y = x
        for _ in range(5000):  # deeper than Python's default recursion limit
            y = y * 1.0001
        y.backward()
        self.assertAlmostEqual(x.grad, 1.0001 ** 5000, places=9)

    def test_the_tape_holds_each_node_once_in_the_order_made_and_backward_clears_it(self):
        Value.tape.clear()
        a, b = Value(2.0), Value(3.0)  # leaves: not on the tape
        c = a * b
        d = c + c  # c is read twice, made once
        e = d.exp()
        self.assertEqual(Value.tape, [c, d, e])
        d.backward()  # from d: e, made later and off d's path, takes no part
        self.assertEqual((a.grad, b.grad, c.grad, e.grad), (6.0, 4.0, 2.0, 0.0))
        self.assertEqual(Value.tape, [])

    def test_float_inputs_make_no_nodes(self):
        Value.tape.clear()
        logits = [0.2, -1.0, 3.0, 0.5]
        md.cross_entropy(logits, 1), md.softmax(logits), md.rmsnorm(logits)
        self.assertEqual(Value.tape, [])


class TestFloatReference(unittest.TestCase):
    def test_the_benchmarks_float_code_computes_name_gradients_loss_and_gradient(self):
        # tests/benchmark.py times the engine against this hand-derived backward pass
        import random
        names = ['isabella', 'olivia', 'mia', 'zoe', 'christopher']
        tok = md.Tokenizer(names)
        state_dict = md.init_params(tok.vocab_size, random.Random(0))
        rng = random.Random(1)
        for _ in range(5):
            for p in md.parameters(state_dict):
                p.data = rng.gauss(0, 0.3)
            clean = tok.encode(rng.choice(names))
            noisy = md.corrupt(clean, rng.uniform(0.1, 1.0), tok, rng)
            loss, grad = md.name_gradient(clean, noisy, tok, state_dict)
            float_loss, float_grad = float_name_gradient(clean, noisy, tok, md.as_floats(state_dict))
            self.assertAlmostEqual(loss, float_loss, delta=1e-10)
            self.assertLess(max(abs(a - b) for a, b in zip(grad, float_grad)), 1e-10)


if __name__ == '__main__':
    unittest.main()
