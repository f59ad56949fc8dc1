"""A float reference for one name's training step: microdiffusion's forward pass and masked loss,
and the backward pass written out by hand, on plain floats and lists (standard library only; no
Value, no graph). It computes what name_gradient computes, to rounding: the same loss, and the
gradient in parameters() order. tests/benchmark.py times the engine against it, the floor of
what scalar Python can do; test_engine.py checks that the two agree.
"""
import math
import operator
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import microdiffusion as md  # the hyperparameters


def float_name_gradient(clean, noisy, tok, weights):
    """(loss, gradient in parameters() order) of one corrupted name, weights = as_floats(state_dict)."""
    mul = operator.mul
    n_pos, head_dim, scale = len(noisy), md.head_dim, 1 / math.sqrt(md.head_dim)
    masked = [pos for pos, token in enumerate(noisy) if token == tok.MASK]
    grads = {name: [[0.0] * len(rows[0]) for _ in rows] for name, rows in weights.items()}

    def matvec(w, x):  # W x
        return [sum(map(mul, row, x)) for row in w]

    def backprop_matvec(w_t, dw, x, dy, dx):  # y = W x: dW += dy x^T, dx += W^T dy (w_t: W^T)
        for drow, dyi in zip(dw, dy):
            if dyi:
                drow[:] = [d + dyi * xj for d, xj in zip(drow, x)]
        dx[:] = [d + sum(map(mul, column, dy)) for d, column in zip(dx, w_t)]

    def rmsnorm(x):  # (y, s): y = x s, s = (mean(x^2) + 1e-5)^-1/2
        s = (sum(map(mul, x, x)) / len(x) + 1e-5) ** -0.5
        return [xi * s for xi in x], s

    def backprop_rmsnorm(x, s, dy):  # dx_i = s dy_i - s^3 x_i (dy . x) / n
        c = s ** 3 * sum(map(mul, dy, x)) / len(x)
        return [s * dyi - c * xi for dyi, xi in zip(dy, x)]

    def softmax(z):
        top = max(z)
        exps = [math.exp(zi - top) for zi in z]
        total = sum(exps)
        return [e / total for e in exps]

    # forward, keeping what the backward pass reads; and each matrix transposed, for the backward
    transposed = {name: [list(column) for column in zip(*rows)] for name, rows in weights.items()
                  if name.startswith('layer')}
    wte, wpe = weights['wte'], weights['wpe']
    embedded = [[te + pe for te, pe in zip(wte[token], wpe[pos])] for pos, token in enumerate(noisy)]
    x, scales0 = zip(*map(rmsnorm, embedded))
    x = list(x)
    saved = []
    for i in range(md.n_layer):
        w = {name: weights[f'layer{i}.{name}'] for name in ('attn_wq', 'attn_wk', 'attn_wv', 'attn_wo', 'mlp_fc1', 'mlp_fc2')}
        w_t = {name: transposed[f'layer{i}.{name}'] for name in w}
        normed = [rmsnorm(xi) for xi in x]
        x_norm = [xn for xn, _ in normed]
        keys = [matvec(w['attn_wk'], xn) for xn in x_norm]
        values = [matvec(w['attn_wv'], xn) for xn in x_norm]
        positions = masked if i == md.n_layer - 1 else range(n_pos)
        x_next, at = [None] * n_pos, {}
        for pos in positions:
            q = matvec(w['attn_wq'], x_norm[pos])
            heads, x_heads = [], []
            for h in range(md.n_head):
                hs = slice(h * head_dim, (h + 1) * head_dim)
                attn = softmax([sum(map(mul, q[hs], k[hs])) * scale for k in keys])
                heads.append(attn)
                x_heads.extend(sum(a * v[d] for a, v in zip(attn, values)) for d in range(h * head_dim, (h + 1) * head_dim))
            x_attn = [a + b for a, b in zip(matvec(w['attn_wo'], x_heads), x[pos])]
            x_mlp_norm, s_mlp = rmsnorm(x_attn)
            pre = matvec(w['mlp_fc1'], x_mlp_norm)
            hidden = [p if p > 0 else 0.0 for p in pre]
            x_next[pos] = [a + b for a, b in zip(matvec(w['mlp_fc2'], hidden), x_attn)]
            at[pos] = (q, heads, x_heads, x_attn, x_mlp_norm, s_mlp, hidden)
        saved.append((w, w_t, x, normed, keys, values, positions, at))
        x = x_next

    # the loss: mean cross-entropy at the masked positions, and its gradient with respect to the logits
    letters, dletters = wte[:len(tok.chars)], grads['wte'][:len(tok.chars)]
    letters_t = [list(column) for column in zip(*letters)]
    loss, dx = 0.0, [None] * n_pos
    for pos in masked:
        logits = matvec(letters, x[pos])
        top = max(logits)
        log_total = math.log(sum(math.exp(z - top) for z in logits)) + top
        loss += log_total - logits[clean[pos]]
        dlogits = [math.exp(z - log_total) / len(masked) for z in logits]
        dlogits[clean[pos]] -= 1 / len(masked)
        dx[pos] = [0.0] * md.n_embd
        backprop_matvec(letters_t, dletters, x[pos], dlogits, dx[pos])
    loss /= len(masked)

    # backward through the layers, last first
    for i in reversed(range(md.n_layer)):
        w, w_t, x, normed, keys, values, positions, at = saved[i]
        dw = {name: grads[f'layer{i}.{name}'] for name in w}
        dx_in = [[0.0] * md.n_embd for _ in range(n_pos)]
        dx_norm = [[0.0] * md.n_embd for _ in range(n_pos)]
        dkeys = [[0.0] * md.n_embd for _ in range(n_pos)]
        dvalues = [[0.0] * md.n_embd for _ in range(n_pos)]
        for pos in positions:
            q, heads, x_heads, x_attn, x_mlp_norm, s_mlp, hidden = at[pos]
            dout = dx[pos]  # x_next = fc2(relu(fc1(rmsnorm(x_attn)))) + x_attn
            dhidden = [0.0] * md.mlp_hidden
            backprop_matvec(w_t['mlp_fc2'], dw['mlp_fc2'], hidden, dout, dhidden)
            dpre = [d if h > 0 else 0.0 for d, h in zip(dhidden, hidden)]
            dx_mlp_norm = [0.0] * md.n_embd
            backprop_matvec(w_t['mlp_fc1'], dw['mlp_fc1'], x_mlp_norm, dpre, dx_mlp_norm)
            dx_attn = [a + b for a, b in zip(dout, backprop_rmsnorm(x_attn, s_mlp, dx_mlp_norm))]
            dx_in[pos] = list(dx_attn)  # x_attn = wo(heads) + x
            dx_heads = [0.0] * md.n_embd
            backprop_matvec(w_t['attn_wo'], dw['attn_wo'], x_heads, dx_attn, dx_heads)
            dq = [0.0] * md.n_embd
            for h, attn in enumerate(heads):
                hs = range(h * head_dim, (h + 1) * head_dim)
                dh = [dx_heads[d] for d in hs]
                dattn = [sum(dh[j] * v[d] for j, d in enumerate(hs)) for v in values]
                for a, dv in zip(attn, dvalues):
                    for j, d in enumerate(hs):
                        dv[d] += a * dh[j]
                mean = sum(map(mul, attn, dattn))
                dscores = [a * (da - mean) * scale for a, da in zip(attn, dattn)]
                for ds, k, dk in zip(dscores, keys, dkeys):
                    for d in hs:
                        dq[d] += ds * k[d]
                        dk[d] += ds * q[d]
            backprop_matvec(w_t['attn_wq'], dw['attn_wq'], normed[pos][0], dq, dx_norm[pos])
        for pos in range(n_pos):
            backprop_matvec(w_t['attn_wk'], dw['attn_wk'], normed[pos][0], dkeys[pos], dx_norm[pos])
            backprop_matvec(w_t['attn_wv'], dw['attn_wv'], normed[pos][0], dvalues[pos], dx_norm[pos])
            dx_in[pos] = [a + b for a, b in zip(dx_in[pos], backprop_rmsnorm(x[pos], normed[pos][1], dx_norm[pos]))]
        dx = dx_in

    # the embedding: x = rmsnorm(wte[token] + wpe[pos])
    for pos, token in enumerate(noisy):
        de = backprop_rmsnorm(embedded[pos], scales0[pos], dx[pos])
        grads['wte'][token] = [a + b for a, b in zip(grads['wte'][token], de)]
        grads['wpe'][pos] = [a + b for a, b in zip(grads['wpe'][pos], de)]
    return loss, [g for rows in grads.values() for row in rows for g in row]
