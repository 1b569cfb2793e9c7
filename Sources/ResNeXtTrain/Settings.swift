import Foundation
import ResNeXt

/// Every setting of a training run; written to config.json and into every checkpoint.
public struct TrainSettings: Codable, Equatable, Sendable {
    public var depth = 29
    public var cardinality = 8
    public var baseChannels = 64
    public var epochs = 300
    public var batchSize = 128
    public var bnGroup = 16
    public var baseLR = 0.1
    public var lr: Double? = nil
    public var momentum = 0.9
    public var weightDecay = 5e-4
    public var nesterov = true
    public var schedule = LearningRateSchedule.Kind.multistep
    public var milestones = [150, 225]
    public var lrDecay = 0.1
    public var warmupEpochs = 0.0
    public var seed: UInt64 = 17
    public var dataDir = "data/cifar-10-batches-bin"
    public var outdir = "runs/resnext"
    public var initPath: String? = nil
    public var resumePath: String? = nil
    public var augment = true
    public var shuffle = true
    public var maxSteps: Int? = nil
    public var threads = 1
    public var tensorboard = false
    public var checkEvery: Int? = nil
    public var progressSeconds = 5.0
    /// Gradient allreduce bucket in MiB (nil: `defaultBucketMebibytes`); 0: one allreduce after
    /// the backward pass. Optional so that checkpoints written before it existed still load.
    public var bucketMB: Double? = nil
    /// Time each convolution's paths before the first step and keep the fastest
    /// (`ConvolutionTuner`); optional so that older checkpoints still load.
    public var tuneConvolutions: Bool? = nil

    /// PyTorch DDP's default `bucket_cap_mb`.
    public static let defaultBucketMebibytes = 25.0
    public var bucketMebibytes: Double { bucketMB ?? Self.defaultBucketMebibytes }

    public init() {}

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
            throw ResNeXtError("--batch-size \(batchSize) is not divisible by \(processes) processes x --bn-group \(bnGroup): each process needs a whole number of BN groups (choose a batch that is a multiple of \(processes * bnGroup))")
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
        try Self.validateBucket(mebibytes: bucketMebibytes)
        if initPath != nil && resumePath != nil { throw ResNeXtError("--init and --resume exclude each other: --resume restores the whole state") }
    }

    /// `--bucket-mb`, for `train` and `bench`.
    public static func validateBucket(mebibytes: Double) throws {
        guard mebibytes >= 0, mebibytes.isFinite else {
            throw ResNeXtError("--bucket-mb must be 0 (no buckets) or a positive size in MiB (got \(mebibytes))")
        }
    }

    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return String(decoding: try! encoder.encode(self), as: UTF8.self)
    }

    public static func decode(json: String) throws -> TrainSettings {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(TrainSettings.self, from: Data(json.utf8))
    }
}
