"""The overrides of a tiny training run (a 32x32 MLP, 20 steps, 2 evaluation episodes): what the
end-to-end tests (tests/test_pipeline_e2e.py, test_distributed_e2e.py, test_wheel.py) train
with."""

TINY_POLICY = [  # a 32x32 MLP denoiser over 4-step chunks, 2 of them executed
    "backbone=mlp",
    "backbone.kwargs.hidden_dims=[32,32]",
    "policy.args.horizon=4",
    "policy.args.n_action_steps=2",
]
TINY_BC = [
    *TINY_POLICY,
    "algo.num_steps=20",
    "algo.warmup_steps=2",
    "algo.log_every=5",
    "algo.val_every=10",
    "algo.eval_every=10",
    "algo.checkpoint_every=10",
    "data.batch_size=16",
    "data.val_ratio=0.25",
    "eval.n_episodes=2",
    "eval.n_episodes_during_training=2",
]
TINY_TRAINING = [  # train.py on a state-observation dataset: TINY_BC, 12-step evaluations
    "task.env_kwargs.obs_mode=state",
    *TINY_BC,
    "eval.n_envs=1",
    "eval.video_episodes=1",
    "task.max_episode_steps=12",
    "torch_threads=1",
    "logger=none",
]
