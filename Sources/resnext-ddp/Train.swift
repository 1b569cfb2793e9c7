import ArgumentParser
import Foundation
import ResNeXt
import ResNeXtTrain

/// A comma-separated list of epochs, e.g. 150,225.
struct Milestones: ExpressibleByArgument {
    let epochs: [Int]
    init?(argument: String) {
        let parts = argument.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ $0 != nil && $0! >= 0 }) else { return nil }
        epochs = parts.map { $0! }
    }
    var defaultValueDescription: String { epochs.map(String.init).joined(separator: ",") }
}

extension LearningRateSchedule.Kind: ExpressibleByArgument {}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train ResNeXt on CIFAR-10 (defaults: the paper's CIFAR setup, ResNeXt-29 8x64d, batch 128, 300 epochs).",
        discussion: """
        Run under mpirun for data parallelism: `mpirun -np 8 resnext-ddp train` splits every global batch \
        of --batch-size images over the processes. Outputs go to --outdir: config.json, metrics.jsonl, \
        metrics.csv, checkpoint.safetensors (every epoch), model.safetensors (at the end), tb/ with --tensorboard.
        """)

    @OptionGroup var model: ModelOptions
    @Option(help: "Epochs to train.") var epochs = 300
    @Option(name: .customLong("batch-size"), help: "Global batch: images per optimizer step, over all processes.") var batchSize = 128
    @Option(name: .customLong("bn-group"), help: "Images per BN group (the paper: 16 per worker).") var bnGroup = 16
    @Option(name: .customLong("base-lr"), help: "Learning rate at batch 128; scaled linearly: lr = base-lr x batch / 128.") var baseLR = 0.1
    @Option(help: "Learning rate, instead of the linear scaling rule.") var lr: Double?
    @Option(help: "SGD momentum.") var momentum = 0.9
    @Option(name: .customLong("weight-decay"), help: "Weight decay, on every parameter.") var weightDecay = 5e-4
    @Option(help: "Nesterov momentum (true or false).") var nesterov = true
    @Option(help: "Learning-rate schedule: multistep or cosine.") var schedule = LearningRateSchedule.Kind.multistep
    @Option(help: "Epochs at which multistep multiplies the rate by --lr-decay.") var milestones = Milestones(argument: "150,225")!
    @Option(name: .customLong("lr-decay"), help: "Factor applied at each milestone.") var lrDecay = 0.1
    @Option(name: .customLong("warmup-epochs"), help: "Epochs of linear warm-up from base-lr to lr (Goyal et al.).") var warmupEpochs = 0.0
    @Option(help: "Seed of initialisation, shuffling and augmentation.") var seed: UInt64 = 17
    @Option(name: .customLong("data-dir"), help: "CIFAR-10 binary folder (default: $RESNEXT_DATA, else ./data/cifar-10-batches-bin).") var dataDir: String?
    @Option(help: "Output folder.") var outdir = "runs/resnext"
    @Option(name: .customLong("init"), help: "Start from this state_dict (safetensors, e.g. exported from PyTorch).") var initPath: String?
    @Option(help: "Resume from a checkpoint file or a run folder.") var resume: String?
    @Flag(name: .customLong("no-augment"), help: "Turn off random crop and flip.") var noAugment = false
    @Flag(name: .customLong("no-shuffle"), help: "Keep file order instead of a seeded permutation per epoch.") var noShuffle = false
    @Option(name: .customLong("max-steps"), help: "Stop after this many optimizer steps, writing the final files.") var maxSteps: Int?
    @Option(help: "OpenBLAS threads per process.") var threads = 1
    @Option(name: .customLong("check-every"), help: "Compare replicas every N steps (default: every epoch).") var checkEvery: Int?
    @Option(name: .customLong("progress-seconds"), help: "Seconds between progress lines.") var progressSeconds = 5.0
    @Flag(help: "Write TensorBoard event files to OUTDIR/tb.") var tensorboard = false
    @Option(name: .customLong("bucket-mb"), help: "Gradient allreduce bucket in MiB, reduced while the backward pass goes on (as DDP's bucket_cap_mb); 0: one allreduce after the backward pass.") var bucketMB = TrainSettings.defaultBucketMebibytes
    @Flag(name: .customLong("tune-convolutions"), help: "Before the first step, time each distinct convolution on each of the engine's paths (own kernels or OpenBLAS) and keep the fastest where it beats the default by more than 5 %, as torch.backends.cudnn.benchmark. Checkpoints record the choice; --resume keeps it.") var tuneConvolutions = false

    var settings: TrainSettings {
        var s = TrainSettings()
        s.depth = model.depth; s.cardinality = model.cardinality; s.baseChannels = model.baseChannels
        s.epochs = epochs; s.batchSize = batchSize; s.bnGroup = bnGroup; s.baseLR = baseLR; s.lr = lr
        s.momentum = momentum; s.weightDecay = weightDecay; s.nesterov = nesterov; s.schedule = schedule
        s.milestones = milestones.epochs; s.lrDecay = lrDecay; s.warmupEpochs = warmupEpochs; s.seed = seed
        s.dataDir = CIFAR10.defaultDirectory(dataDir); s.outdir = outdir; s.initPath = initPath; s.resumePath = resume
        s.augment = !noAugment; s.shuffle = !noShuffle; s.maxSteps = maxSteps; s.threads = threads
        s.tensorboard = tensorboard; s.checkEvery = checkEvery; s.progressSeconds = progressSeconds
        s.bucketMB = bucketMB; s.tuneConvolutions = tuneConvolutions ? true : nil
        return s
    }

    func run() throws {
        let comm = makeCommunicator()
        let trainer = Trainer(settings: settings, comm: comm, startupLines: [Startup.blasKernelsLine]) { FileHandleOutput.standardOutput.write($0 + "\n") }
        do {
            try trainer.run()
        } catch {
            fail(comm, error)
        }
        finishCommunicator(comm)
    }
}

