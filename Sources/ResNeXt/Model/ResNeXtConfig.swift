/// Architecture settings of a CIFAR ResNeXt (hysts/pytorch_resnext): depth 9n+2, cardinality,
/// base width; stage widths 4*base, 8*base, 16*base; bottleneck width cardinality * out / 4.
public struct ResNeXtConfig: Codable, Equatable, Sendable, CustomStringConvertible {
    public var depth: Int
    public var cardinality: Int
    public var baseChannels: Int
    public var numClasses: Int

    public init(depth: Int = 29, cardinality: Int = 8, baseChannels: Int = 64, numClasses: Int = 10) {
        self.depth = depth; self.cardinality = cardinality
        self.baseChannels = baseChannels; self.numClasses = numClasses
    }

    public var description: String { "ResNeXt-\(depth) \(cardinality)x\(baseChannels)d" }

    public var blocksPerStage: Int { (depth - 2) / 9 }

    /// Block output widths of the stem and the three stages.
    public var widths: [Int] { [baseChannels, 4 * baseChannels, 8 * baseChannels, 16 * baseChannels] }

    public func validate() throws {
        guard depth >= 11, (depth - 2) % 9 == 0 else {
            throw ResNeXtError("--depth \(depth) is not 9n+2 with n >= 1: use 11, 20, 29, 38, ...")
        }
        guard cardinality >= 1 else { throw ResNeXtError("--cardinality must be at least 1 (got \(cardinality))") }
        guard baseChannels >= 1 else { throw ResNeXtError("--base-channels must be at least 1 (got \(baseChannels))") }
        guard numClasses >= 2 else { throw ResNeXtError("number of classes must be at least 2 (got \(numClasses))") }
        for out in widths.dropFirst() where (cardinality * out) % 4 != 0 || ((cardinality * out) / 4) % cardinality != 0 {
            throw ResNeXtError(
                "bottleneck width \(cardinality)*\(out)/4 is not divisible by the cardinality \(cardinality): choose --base-channels and --cardinality so that it is"
            )
        }
    }
}

extension ResNeXtConfig {
    /// Checks a batch / BN-group pair before any work, with a message naming the options.
    public static func validateBatch(_ batch: Int, bnGroup: Int) throws {
        guard batch >= 1 else { throw ResNeXtError("--batch-size must be at least 1 (got \(batch))") }
        guard bnGroup >= 1 else { throw ResNeXtError("--bn-group must be at least 1 (got \(bnGroup))") }
        guard batch % bnGroup == 0 else {
            throw ResNeXtError("--batch-size \(batch) is not divisible by --bn-group \(bnGroup): choose a BN group that divides the batch")
        }
    }
}
