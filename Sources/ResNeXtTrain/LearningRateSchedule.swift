import Foundation

/// The learning rate at every step. The target rate follows the linear scaling rule,
/// lr = base-lr x batch / 128, unless given directly. `multistep` multiplies it by `decay` at each
/// milestone epoch (as PyTorch's MultiStepLR stepped once per epoch); `cosine` decays it to 0
/// over the run, per step. With warm-up, the first `warmupEpochs` epochs ramp linearly, per
/// step, from base-lr to the target (Goyal et al. 2017).
public struct LearningRateSchedule: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable { case multistep, cosine }
    public var kind: Kind
    public var baseLR: Double
    public var targetLR: Double
    public var milestones: [Int]
    public var decay: Double
    public var warmupEpochs: Double
    public var epochs: Int
    public var stepsPerEpoch: Int

    public init(
        kind: Kind, baseLR: Double, targetLR: Double, milestones: [Int], decay: Double, warmupEpochs: Double,
        epochs: Int, stepsPerEpoch: Int
    ) {
        self.kind = kind; self.baseLR = baseLR; self.targetLR = targetLR; self.milestones = milestones
        self.decay = decay; self.warmupEpochs = warmupEpochs; self.epochs = epochs; self.stepsPerEpoch = stepsPerEpoch
    }

    /// The linear scaling rule.
    public static func scaled(baseLR: Double, batchSize: Int) -> Double { baseLR * Double(batchSize) / 128 }

    /// The rate of global step `step` (0-based; epoch = step / stepsPerEpoch).
    public func rate(step: Int) -> Double {
        let warmupSteps = Int((warmupEpochs * Double(stepsPerEpoch)).rounded())
        if step < warmupSteps {
            return baseLR + (targetLR - baseLR) * Double(step) / Double(warmupSteps)
        }
        switch kind {
        case .multistep:
            let epoch = step / max(stepsPerEpoch, 1)
            let passed = milestones.filter { epoch >= $0 }.count
            return targetLR * pow(decay, Double(passed))
        case .cosine:
            let total = max(epochs * stepsPerEpoch - warmupSteps, 1)
            let t = Double(min(step - warmupSteps, total)) / Double(total)
            return targetLR * 0.5 * (1 + cos(Double.pi * t))
        }
    }
}
