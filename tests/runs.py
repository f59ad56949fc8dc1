"""What the measurement scripts share: the names, the split and the trained model, made by
microdiffusion.py's own main() (in this process, one worker), so that every script measures
exactly what `python microdiffusion.py` makes. test_measure.py checks that they agree."""
import contextlib
import io
import os
import random
import sys
import tempfile
import types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import microdiffusion as md


def split(path, seed):
    """The names as main() keeps them (each once), its split, and its generator just after it."""
    lines, _, sha256 = md.read_names(path)
    names = list(dict.fromkeys(lines))
    rng = random.Random(seed)
    train_names, heldout_names = md.split(names, rng)
    return types.SimpleNamespace(path=path, seed=seed, names=names, sha256=sha256, rng=rng,
                                 train_names=train_names, heldout_names=heldout_names)


def load(path, seed, model_path):
    """A model saved by `microdiffusion.py --save`, as main() loads it: the run's split, tok,
    weights, length_probs, and rng as training left it (the samples main() prints come next)."""
    run = split(path, seed)
    run.tok = md.Tokenizer(run.names)
    state_dict = md.init_params(run.tok.vocab_size, run.rng)
    args = md.parse_args(['--input', path, '--seed', str(seed), '--load', model_path])
    with contextlib.redirect_stdout(io.StringIO()):
        run.length_probs = md.load_model(args, run.tok, run.sha256, state_dict, run.rng)
    run.weights = md.as_floats(state_dict)
    run.num_steps, run.batch_size = args.num_steps, args.batch_size
    return run


def train(path, seed, num_steps=md.num_steps, batch_size=md.batch_size,
          learning_rate=md.learning_rate):
    """Trains by `microdiffusion.py --input PATH --seed SEED --num-steps N --batch-size B`,
    at this learning rate, and returns load()'s run."""
    default_rate = md.learning_rate
    with tempfile.TemporaryDirectory() as folder:
        model_path = os.path.join(folder, 'model.json')
        md.learning_rate = learning_rate
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                md.main(['--input', path, '--seed', str(seed), '--num-steps', str(num_steps),
                         '--batch-size', str(batch_size), '--workers', '1', '--eval-names', '0',
                         '--num-samples', '0', '--save', model_path])
        finally:
            md.learning_rate = default_rate
        return load(path, seed, model_path)


def heldout_nelbo(run, n_names=md.n_heldout):
    """main()'s held-out NELBO per character, on the same names with the same orders."""
    names = run.heldout_names[:n_names]
    return md.heldout_nelbo(names, run.tok, run.weights, run.length_probs, random.Random(run.seed + 1))[0]
