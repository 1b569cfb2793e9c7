import ArgumentParser
import Foundation
import ResNeXt

/// Every setting of a training run, declared once: these are `resnext-ddp train`'s options (with
/// their defaults and help), and the record written to config.json and into every checkpoint
/// (`json()`, keys in snake case). Start from `TrainSettings.defaults` or `parse(_:)`.
public struct TrainSettings: ParsableArguments, Encodable, Sendable {
    @Option(help: "Network depth, 9n+2 (29 for ResNeXt-29).")
    public var depth = 29
    @Option(help: "Cardinality C: groups of the 3x3 convolutions.")
    public var cardinality = 8
    @Option(name: .customLong("base-channels"), help: "Base width d (64 for 29-8x64d).")
    public var baseChannels = 64
    @Option(help: "Epochs to train.")
    public var epochs = 300
    @Option(name: .customLong("batch-size"), help: "Global batch: images per optimizer step, over all processes.")
    public var batchSize = 128
    @Option(name: .customLong("bn-group"), help: "Images per BN group (the paper: 16 per worker).")
    public var bnGroup = 16
    @Option(name: .customLong("base-lr"), help: "Learning rate at batch 128; scaled linearly: lr = base-lr x batch / 128.")
    public var baseLR = 0.1
    @Option(help: "Learning rate, instead of the linear scaling rule.")
    public var lr: Double?
    @Option(help: "SGD momentum.")
    public var momentum = 0.9
    @Option(name: .customLong("weight-decay"), help: "Weight decay, on every parameter.")
    public var weightDecay = 5e-4
    @Option(help: "Nesterov momentum (true or false).")
    public var nesterov = true
    @Option(help: "Learning-rate schedule: multistep or cosine.")
    public var schedule = LearningRateSchedule.Kind.multistep
    @Option(
        help: ArgumentHelp("Epochs at which multistep multiplies the rate by --lr-decay, comma-separated. (default: 150,225)", valueName: "epochs"),
        transform: TrainSettings.milestones(_:))
    public var milestones = [150, 225]
    @Option(name: .customLong("lr-decay"), help: "Factor applied at each milestone.")
    public var lrDecay = 0.1
    @Option(name: .customLong("warmup-epochs"), help: "Epochs of linear warm-up from base-lr to lr (Goyal et al.).")
    public var warmupEpochs = 0.0
    @Option(help: "Seed of initialisation, shuffling and augmentation.")
    public var seed: UInt64 = 17
    @Option(name: .customLong("data-dir"), help: "CIFAR-10 binary folder: $RESNEXT_DATA where set, else data/cifar-10-batches-bin.")
    public var dataDir = CIFAR10.defaultDirectory(nil)
    @Option(help: "Output folder.")
    public var outdir = "runs/resnext"
    @Option(name: .customLong("init"), help: "Start from this state_dict (safetensors, e.g. exported from PyTorch).")
    public var initPath: String?
    @Option(name: .customLong("resume"), help: "Resume from a checkpoint file or a run folder.")
    public var resumePath: String?
    @Flag(inversion: .prefixedNo, help: "Random crop and flip (--no-augment: off).")
    public var augment = true
    @Flag(inversion: .prefixedNo, help: "A seeded permutation per epoch (--no-shuffle: file order).")
    public var shuffle = true
    @Option(name: .customLong("max-steps"), help: "Stop after this many optimizer steps, writing the final files.")
    public var maxSteps: Int?
    @Option(help: "OpenBLAS threads per process.")
    public var threads = 1
    @Flag(help: "Write TensorBoard event files to OUTDIR/tb.")
    public var tensorboard = false
    @Option(name: .customLong("check-every"), help: "Compare replicas every N steps (default: every epoch).")
    public var checkEvery: Int?
    @Option(name: .customLong("progress-seconds"), help: "Seconds between progress lines.")
    public var progressSeconds = 5.0
    @Option(
        name: .customLong("bucket-mb"),
        help:
            "Gradient allreduce bucket in MiB, reduced while the backward pass goes on (as DDP's bucket_cap_mb); 0: one allreduce after the backward pass."
    )
    public var bucketMB = TrainSettings.defaultBucketMebibytes
    @Option(
        name: .customLong("grad-dtype"),
        help:
            "What the gradients cross the network as: fp32, or bf16 (half the bytes: each bucket rounded to bfloat16 and summed in it, as DDP's bf16_compress_hook; the update stays float32)."
    )
    public var gradDtype = GradientPrecision.fp32
    @Flag(
        name: .customLong("tune-convolutions"),
        help:
            "Before the first step, time each distinct convolution on each of the engine's paths (own kernels or OpenBLAS) and keep the fastest where it beats the default by more than 5 %, as torch.backends.cudnn.benchmark. Checkpoints record the choice; --resume keeps it."
    )
    public var tuneConvolutions = false
    @Option(
        name: .customLong("checkpoint-minutes"),
        help:
            "Also write a checkpoint when this many minutes have passed since the last one, mid-epoch too (0: only at epoch ends and --checkpoint-steps)."
    )
    public var checkpointMinutes = 30.0
    @Option(name: .customLong("checkpoint-steps"), help: "Also write a checkpoint every N optimizer steps.")
    public var checkpointSteps: Int?
    @Option(name: .customLong("keep-checkpoints"), help: "Checkpoints kept in --outdir (checkpoint-STEP.safetensors), newest first.")
    public var keepCheckpoints = 2

    public init() {}

    /// Every option at its default.
    public static var defaults: TrainSettings {
        do { return try parse([]) } catch { fatalError("TrainSettings: no option is required, yet parsing none failed: \(error)") }
    }

    /// PyTorch DDP's default `bucket_cap_mb`.
    public static let defaultBucketMebibytes = 25.0

    /// `--milestones 150,225`.
    static func milestones(_ text: String) throws -> [Int] {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ $0 != nil && $0! >= 0 }) else {
            throw ValidationError("--milestones \(text): expected epochs separated by commas, e.g. 150,225")
        }
        return parts.map { $0! }
    }

    public var model: ResNeXtConfig {
        ResNeXtConfig(depth: depth, cardinality: cardinality, baseChannels: baseChannels)
    }

    /// The learning rate after warm-up: --lr, or the linear scaling rule.
    public var targetLR: Double { lr ?? LearningRateSchedule.scaled(baseLR: baseLR, batchSize: batchSize) }

    /// Checks everything that can be checked before reading data, with messages naming the option.
    public func validate(processes: Int) throws {
        try model.validate()
        try ResNeXtConfig.validateBatch(batchSize, bnGroup: bnGroup)
        guard batchSize % (processes * bnGroup) == 0 else {
            throw ResNeXtError(
                "--batch-size \(batchSize) is not divisible by \(processes) processes x --bn-group \(bnGroup): each process needs a whole number of BN groups (choose a batch that is a multiple of \(processes * bnGroup))"
            )
        }
        guard epochs >= 1 else { throw ResNeXtError("--epochs must be at least 1 (got \(epochs))") }
        guard targetLR > 0, baseLR > 0 else { throw ResNeXtError("--base-lr and --lr must be positive") }
        guard momentum >= 0, weightDecay >= 0 else { throw ResNeXtError("--momentum and --weight-decay must not be negative") }
        guard lrDecay > 0 else { throw ResNeXtError("--lr-decay must be positive (got \(lrDecay))") }
        guard warmupEpochs >= 0 else { throw ResNeXtError("--warmup-epochs must not be negative") }
        if nesterov && momentum == 0 { throw ResNeXtError("--nesterov true needs a momentum > 0 (as torch.optim.SGD)") }
        if let maxSteps, maxSteps < 1 { throw ResNeXtError("--max-steps must be at least 1 (got \(maxSteps))") }
        if let checkEvery, checkEvery < 1 { throw ResNeXtError("--check-every must be at least 1 (got \(checkEvery))") }
        guard threads >= 1 else { throw ResNeXtError("--threads must be at least 1") }
        guard checkpointMinutes >= 0, checkpointMinutes.isFinite else {
            throw ResNeXtError("--checkpoint-minutes must be 0 (off) or a positive number of minutes (got \(checkpointMinutes))")
        }
        if let checkpointSteps, checkpointSteps < 1 { throw ResNeXtError("--checkpoint-steps must be at least 1 (got \(checkpointSteps))") }
        guard keepCheckpoints >= 1 else { throw ResNeXtError("--keep-checkpoints must be at least 1 (got \(keepCheckpoints))") }
        try Self.validateBucket(mebibytes: bucketMB)
        if initPath != nil && resumePath != nil { throw ResNeXtError("--init and --resume exclude each other: --resume restores the whole state") }
    }

    /// `--bucket-mb`, for `train` and `bench`.
    public static func validateBucket(mebibytes: Double) throws {
        guard mebibytes >= 0, mebibytes.isFinite else {
            throw ResNeXtError("--bucket-mb must be 0 (no buckets) or a positive size in MiB (got \(mebibytes))")
        }
    }

    /// The settings as JSON: one key per option, snake case (`base_lr`, `bucket_mb`, ...), null
    /// for an optional option not given.
    public func json() throws -> String { try snakeCaseJSON(self, pretty: true) }
}

extension LearningRateSchedule.Kind: ExpressibleByArgument {}
extension GradientPrecision: ExpressibleByArgument {}

// A parsed option encodes as its value: what lets the options themselves be the JSON record.
// swift-format-ignore: AvoidRetroactiveConformances
extension Option: @retroactive Encodable where Value: Encodable {
    public func encode(to encoder: Encoder) throws { try wrappedValue.encode(to: encoder) }
}

// swift-format-ignore: AvoidRetroactiveConformances
extension Flag: @retroactive Encodable where Value: Encodable {
    public func encode(to encoder: Encoder) throws { try wrappedValue.encode(to: encoder) }
}

/// config.json: the settings and what follows from them on this run.
struct RunConfig: Encodable {
    let settings: TrainSettings
    let effectiveLR: Double
    let processes, perProcessBatch, bnGroupsPerProcess, stepsPerEpoch, parameters, trainImages, testImages: Int
    let model, version: String
    /// Where the run tuned them (`ResNeXt.convolutionPaths`).
    let convolutionPaths: String?

    func json() throws -> String { try snakeCaseJSON(self, pretty: true) }
}

/// `value` as JSON the way every file and line of resnext-ddp writes it: keys in snake case,
/// sorted; one line, or indented with `pretty`.
public func snakeCaseJSON<T: Encodable>(_ value: T, pretty: Bool = false) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
    encoder.keyEncodingStrategy = .convertToSnakeCase
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
