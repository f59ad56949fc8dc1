"""microgpt's left-to-right model, built from microdiffusion's own parts: the reference the
diffusion model is measured against.

What changes from mask_predictor, and nothing else:
- attention is causal: position pos reads the keys and values of positions 0..pos only;
- a BOS token stands before the name and again after it, where it means "the name ends";
  there is no MASK, and the length is not drawn first: the model ends the name itself;
- the target at each position is the next token, every position carries loss;
- 1 layer and a separate output matrix lm_head (microgpt's), 1,000 steps of one name at
  learning rate 0.01 (microgpt's).
The Value engine, the building blocks (linear, rmsnorm, attention, cross_entropy), Adam and its
settings, the data and its train/held-out split all come from microdiffusion.py.

Run: python tests/left_to_right.py [--input input.txt] [--seed 42] [--samples 1000 --out PREFIX]
prints the held-out NLL in the same units as microdiffusion.py's NELBO (nats per letter and
end, on the same held-out names) and writes samples at temperatures 0.5 (microgpt's) and 1.0.
"""
import argparse
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import microdiffusion as md
import runs

n_layer = 1
num_steps = 1000
learning_rate = 0.01  # microgpt's; Adam's betas and the linear decay are microdiffusion's (also microgpt's)


def init_params(vocab_size, rng):
    def matrix(n_out, n_in):
        return [[md.Value(rng.gauss(0, md.init_std)) for _ in range(n_in)] for _ in range(n_out)]
    state_dict = {'wte': matrix(vocab_size, md.n_embd), 'wpe': matrix(md.block_size, md.n_embd),
                  'lm_head': matrix(vocab_size, md.n_embd)}
    for i in range(n_layer):
        for name in ('attn_wq', 'attn_wk', 'attn_wv', 'attn_wo'):
            state_dict[f'layer{i}.{name}'] = matrix(md.n_embd, md.n_embd)
        state_dict[f'layer{i}.mlp_fc1'] = matrix(md.mlp_hidden, md.n_embd)
        state_dict[f'layer{i}.mlp_fc2'] = matrix(md.n_embd, md.mlp_hidden)
    return state_dict


def gpt(token_ids, state_dict):
    """Logits of the next token at every position: mask_predictor with causal attention."""
    sd = state_dict
    x = [md.rmsnorm([te + pe for te, pe in zip(sd['wte'][token], sd['wpe'][pos])])
         for pos, token in enumerate(token_ids)]
    for i in range(n_layer):
        x_norm = [md.rmsnorm(xi) for xi in x]
        k = [md.linear(xi, sd[f'layer{i}.attn_wk']) for xi in x_norm]
        v = [md.linear(xi, sd[f'layer{i}.attn_wv']) for xi in x_norm]
        x_next = []
        for pos in range(len(token_ids)):
            q = md.linear(x_norm[pos], sd[f'layer{i}.attn_wq'])
            attn_out = []
            for h in range(md.n_head):
                hs = slice(h * md.head_dim, (h + 1) * md.head_dim)
                # causal: the keys and values of this position and the ones before it, no later
                keys, values = [k_j[hs] for k_j in k[:pos + 1]], [v_j[hs] for v_j in v[:pos + 1]]
                attn_out.extend(md.attention(q[hs], keys, values))
            x_attn = [a + b for a, b in zip(md.linear(attn_out, sd[f'layer{i}.attn_wo']), x[pos])]
            hidden = md.relu(md.linear(md.rmsnorm(x_attn), sd[f'layer{i}.mlp_fc1']))
            x_next.append([a + b for a, b in zip(md.linear(hidden, sd[f'layer{i}.mlp_fc2']), x_attn)])
        x = x_next
    return [md.linear(xi, sd['lm_head']) for xi in x]


def name_loss(name, tok, bos, state_dict):
    """Mean cross-entropy of the next token over the name's letters and its end, and the count."""
    tokens = [bos] + [tok.stoi[ch] for ch in name] + [bos]
    logits = gpt(tokens[:-1], state_dict)
    losses = [md.cross_entropy(z, target) for z, target in zip(logits, tokens[1:])]
    return md.total(losses) * (1.0 / len(losses)), len(losses)


def train(names, tok, bos, state_dict, num_steps=num_steps):
    """microgpt's training: one name a step, Adam with microdiffusion's settings and decay."""
    params = md.parameters(state_dict)
    optimizer = md.Adam(params)
    for step in range(1, num_steps + 1):
        loss, _ = name_loss(names[(step - 1) % len(names)], tok, bos, state_dict)
        loss.backward()
        optimizer.step([p.grad for p in params], learning_rate * (1 - (step - 1) / num_steps))
        for p in params:
            p.grad = 0.0
    return loss.data


def heldout_nll(names, tok, bos, weights):
    """Nats per character (letters and the end), as microdiffusion's NELBO is reported."""
    total, count = 0.0, 0
    for name in names:
        mean, n = name_loss(name, tok, bos, weights)
        total += mean * n
        count += n
    return total / count


def sample(tok, bos, weights, rng, temperature):
    tokens = [bos]
    while len(tokens) <= md.max_letters:  # at most 15 letters, as the diffusion canvas holds
        probs = md.softmax([z / temperature for z in gpt(tokens, weights)[-1]])
        token = rng.choices(range(len(probs)), weights=probs)[0]
        if token == bos:
            break
        tokens.append(token)
    return ''.join(tok.chars[t] for t in tokens[1:])


def build(path, seed, steps=num_steps):
    """The diffusion run's split and generator (tests/runs.py), then this model's weights,
    trained."""
    data = runs.split(path, seed)
    rng, train_names, heldout_names = data.rng, data.train_names, data.heldout_names
    tok = md.Tokenizer(data.names)
    bos = len(tok.chars)  # the vocabulary is the characters and BOS
    state_dict = init_params(len(tok.chars) + 1, rng)
    train(train_names, tok, bos, state_dict, steps)
    return rng, tok, bos, md.as_floats(state_dict), train_names, heldout_names


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--input', default='input.txt')
    parser.add_argument('--seed', type=int, default=42)
    parser.add_argument('--num-steps', type=int, default=num_steps, help=f'training steps (default {num_steps}, microgpt\'s)')
    parser.add_argument('--eval-names', type=int, default=1000, help='held-out names to score (default all 1,000)')
    parser.add_argument('--samples', type=int, default=0, help='names to write at each temperature')
    parser.add_argument('--temperatures', default='0.5,1.0')
    parser.add_argument('--out', default='left_to_right', help='samples go to OUT-t0.5.txt, OUT-t1.txt, ...')
    args = parser.parse_args()
    rng, tok, bos, weights, _, heldout_names = build(args.input, args.seed, args.num_steps)
    print(f"held-out NLL: {heldout_nll(heldout_names[:args.eval_names], tok, bos, weights):.3f} nats/char "
          f"on {min(args.eval_names, len(heldout_names)):,} names never trained on")
    for temperature in [float(x) for x in args.temperatures.split(',')] if args.samples else []:
        sample_rng = random.Random(args.seed)
        path = f"{args.out}-t{temperature:g}.txt"
        with open(path, 'w') as f:
            f.writelines(sample(tok, bos, weights, sample_rng, temperature) + '\n' for _ in range(args.samples))
        print(f"wrote {args.samples:,} samples at temperature {temperature:g} to {path}")


if __name__ == '__main__':
    main()
